"""Request bodies, validated strictly: a wrong type is a 422 naming the field, never a guess or a 500.
Unknown fields are ignored where OpenAI clients send them (chat), refused elsewhere. Every text must be
valid Unicode: JSON can escape a lone surrogate ("\\udcff"), which no tokenizer or log can take."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from tunesmith.tasks.base import Correction


def _unicode(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"not valid Unicode text (a lone surrogate \\u{ord(text[exc.start]):04x} at character {exc.start})"
        ) from None
    return text


Text = Annotated[str, AfterValidator(_unicode)]
"""A string that encodes as UTF-8."""


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class TextPart(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    type: Literal["text"]
    text: Text


class ChatMessage(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: Text | list[TextPart]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    include_usage: bool = False


class ChatRequest(BaseModel):
    """POST /v1/chat/completions, the OpenAI shape (fields we do not use, such as `user`, are ignored)."""

    model_config = ConfigDict(strict=True, extra="ignore")
    model: Text | None = None
    """The served name; may be left out when the server serves one model."""
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0, le=2)
    """Omitted: the run's own generation settings (greedy unless configured); 0: greedy; above: sampling."""
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, gt=0)
    max_completion_tokens: int | None = Field(None, gt=0)
    stop: Text | list[Text] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1)
    seed: int | None = None

    def stops(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return [s for s in stops if s]


class _TextsInput:
    """A request whose `input` is one text or a list of them."""

    input: str | list[str]

    def texts(self) -> list[str]:
        """The input as a list of texts."""
        return [self.input] if isinstance(self.input, str) else list(self.input)


class _PairedInput(_TextsInput):
    """A request whose `input` may come with a `text_pair` each (models that read pairs of texts)."""

    text_pair: str | list[str] | None

    def pairs(self) -> list[str] | None:
        """The second texts as a list, None without."""
        if self.text_pair is None:
            return None
        return [self.text_pair] if isinstance(self.text_pair, str) else list(self.text_pair)


class ClassifyRequest(_PairedInput, _Strict):
    """POST /v1/classify: one text or a list; `top_k` labels per text (all by default). A model that reads
    pairs of texts takes a `text_pair` for each (as transformers' pipelines call it)."""

    model: Text | None = None
    """The served name; may be left out when the server serves one model."""
    input: Text | list[Text]
    text_pair: Text | list[Text] | None = None
    top_k: int | None = Field(None, ge=1)


class ScoreRequest(_PairedInput, _Strict):
    """POST /v1/score (regression runs): one text or a list, with a `text_pair` each for a model that reads
    pairs."""

    model: Text | None = None
    """The served name; may be left out when the server serves one model."""
    input: Text | list[Text]
    text_pair: Text | list[Text] | None = None


class EntitiesRequest(_TextsInput, _Strict):
    """POST /v1/entities (token-classification runs): one text or a list."""

    model: Text | None = None
    """The served name; may be left out when the server serves one model."""
    input: Text | list[Text]


class EmbeddingsRequest(_TextsInput, BaseModel):
    """POST /v1/embeddings, the OpenAI shape: one text or a list; `dimensions` keeps the leading ones (what a
    Matryoshka-trained run is trained for), re-normalised; `encoding_format` float or base64 (little-endian
    float32 bytes, what the official clients ask for by default). Token-id input is refused: the run's own
    tokenizer reads text. Fields we do not use (`user`) are ignored, as OpenAI clients send them."""

    model_config = ConfigDict(strict=True, extra="ignore")
    model: Text | None = None
    input: Text | list[Text]
    dimensions: int | None = Field(None, ge=1)
    encoding_format: Literal["float", "base64"] = "float"


class EntitySpan(_Strict):
    """One entity of a text: character offsets (end exclusive) and its type."""

    start: int = Field(ge=0)
    end: int = Field(ge=1)
    label: Text = Field(min_length=1, max_length=200)


class FeedbackRequest(_Strict):
    """POST /v1/feedback on a logged request: the right label (classification; regression: the right
    number, as a string or a number), a better answer (chat: a
    preference pair for `retune --objective dpo`), a rating of the answer given (chat: "up" or "down",
    a label for `retune --objective kto`), or the text's right entities (token classification: all of them,
    [] for none)."""

    id: Text = Field(min_length=1, max_length=64)
    label: Text | None = None
    answer: Text | None = None
    rating: Literal["up", "down"] | None = None
    entities: list[EntitySpan] | None = Field(None, max_length=1000)
    note: Text | None = Field(None, max_length=2000)

    @model_validator(mode="after")
    def _one_correction(self) -> FeedbackRequest:
        if sum(x is not None for x in (self.label, self.answer, self.rating, self.entities)) != 1:
            raise ValueError(
                "give exactly one of label (classification, regression), answer or rating (chat), entities "
                "(token classification)"
            )
        return self

    def correction(self) -> Correction:
        entities = None if self.entities is None else [e.model_dump() for e in self.entities]
        return Correction(self.label, self.answer, self.rating, entities)


class VersionRequest(_Strict):
    version: str = Field(pattern=r"^v[1-9][0-9]*$")


def error_body(message: str, kind: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """The OpenAI error shape, which its clients turn into typed exceptions."""
    return {"error": {"message": message, "type": kind, "code": code, "param": param}}
