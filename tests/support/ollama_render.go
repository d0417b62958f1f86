// Renders an Ollama Modelfile's TEMPLATE for a conversation the way Ollama's server does, with Go's own
// text/template: the Modelfile's SYSTEM is put first when the conversation has no system message
// (server/routes.go, ChatHandler), consecutive messages of one role are merged and the system messages are
// also joined into .System (template/template.go, collate), and the template is executed with System,
// Messages and an empty Response. Input on stdin: {"template": ..., "system": ..., "messages": [...]}.
package main

import (
	"encoding/json"
	"os"
	"strings"
	"text/template"
)

type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type Input struct {
	Template string    `json:"template"`
	System   string    `json:"system"`
	Messages []Message `json:"messages"`
}

func main() {
	var in Input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		panic(err)
	}
	msgs := in.Messages
	if len(msgs) > 0 && msgs[0].Role != "system" && in.System != "" {
		msgs = append([]Message{{Role: "system", Content: in.System}}, msgs...)
	}
	var system []string
	var collated []*Message
	for i := range msgs {
		if msgs[i].Role == "system" {
			system = append(system, msgs[i].Content)
		}
		if len(collated) > 0 && collated[len(collated)-1].Role == msgs[i].Role {
			collated[len(collated)-1].Content += "\n\n" + msgs[i].Content
		} else {
			collated = append(collated, &msgs[i])
		}
	}
	t := template.Must(template.New("").Parse(in.Template))
	values := map[string]any{"System": strings.Join(system, "\n\n"), "Messages": collated, "Response": ""}
	if err := t.Execute(os.Stdout, values); err != nil {
		panic(err)
	}
}
