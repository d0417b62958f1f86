"""A sequence classifier that reads the mean of the encoder's last hidden states, not its first token.

Sentence encoders such as MiniLM (all-MiniLM-L6-v2) are trained with mean pooling; transformers'
`AutoModelForSequenceClassification` feeds the head from the first token through a pooler layer that such a
model never trained (BERT's pooler is left from pre-training). Pooling the way the encoder was trained means
the head sees the features the base-model probe (evaluation/baseline.py) sees, so the probe's weights can
start the head (LP-FT) and a run can hold the probe itself as its model.

The class is built per architecture family on the family's own `PreTrainedModel` (BertPreTrainedModel for
BERT...), so `from_pretrained` reads the encoder's checkpoint under its usual prefix (`bert.`), peft treats it
as a sequence classifier (its head is `classifier`) and `save_pretrained` writes a plain folder whose
config.json says `"tunesmith_pooling": "mean"`. `load_pooled` refuses a folder without that mark, and a
whole-model folder's config names the architecture below, so nothing loads it as a first-token classifier in
silence inside tunesmith.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

POOLING_KEY = "tunesmith_pooling"
"""Written into a pooled classifier's config.json: how its head reads the encoder."""
OUTPUT_KEY = "tunesmith_output"
"""In a pooled classifier's config: {"scale", "shift"} applied to the head's outputs, fixed, not trained
(regression: the head learns the normalised target, the model outputs the target's own units, so every
export gives what `predict` gives)."""


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of `hidden` over the positions `attention_mask` keeps (all of them without a mask)."""
    if attention_mask is None:
        return hidden.mean(1)
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1)


@cache
def pooled_classifier_class(config_class: type) -> type:
    """The mean-pooled classifier for encoders configured by `config_class` (one class per family)."""
    from transformers.modeling_outputs import SequenceClassifierOutput
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    backbone_class = MODEL_MAPPING[config_class]
    family = next(c for c in backbone_class.__mro__[1:] if hasattr(c, "base_model_prefix"))
    name = f"MeanPooled{backbone_class.__name__.removesuffix('Model')}ForSequenceClassification"

    def __init__(self: Any, config: Any) -> None:
        family.__init__(self, config)
        self.num_labels = config.num_labels
        backbone = backbone_class(config)
        if getattr(backbone, "pooler", None) is not None:  # the first-token pooler: not used
            backbone.pooler = None
        setattr(self, self.base_model_prefix, backbone)
        rate = getattr(config, "classifier_dropout", None)
        self.dropout = nn.Dropout(rate if rate is not None else getattr(config, "hidden_dropout_prob", 0.1))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        setattr(config, POOLING_KEY, "mean")
        self.post_init()

    def forward(
        self: Any,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        out = self.base_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            **{k: v for k, v in kwargs.items() if v is not None},
        )
        logits = self.classifier(self.dropout(mean_pool(out.last_hidden_state, attention_mask)))
        affine = getattr(self.config, OUTPUT_KEY, None)
        if affine:
            logits = logits * affine["scale"] + affine["shift"]
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.float(), labels)
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions
        )

    return type(
        name,
        (family,),
        {
            "__init__": __init__,
            "forward": forward,
            "__module__": __name__,
            "_keys_to_ignore_on_load_unexpected": [r"pooler\."],
        },
    )


class PooledClassifierLoader:
    """`from_pretrained` that builds the mean-pooled classifier of whatever family the folder's config names
    (the loader in models/loader.py takes any class with `from_pretrained`)."""

    @staticmethod
    def from_pretrained(source: str, **kwargs: Any) -> nn.Module:
        from transformers import AutoConfig

        loading = {k: v for k, v in kwargs.items() if k in ("trust_remote_code", "local_files_only")}
        others = {k: v for k, v in kwargs.items() if k not in loading and k != OUTPUT_KEY}
        # keys the config has (num_labels, id2label, dropout rates...) set it; the rest go to the model
        config, model_kwargs = AutoConfig.from_pretrained(
            source, return_unused_kwargs=True, **loading, **others
        )
        if kwargs.get(OUTPUT_KEY):
            setattr(config, OUTPUT_KEY, dict(kwargs[OUTPUT_KEY]))
        cls = pooled_classifier_class(type(config))
        return cls.from_pretrained(source, config=config, **loading, **model_kwargs)


def is_pooled(model: nn.Module) -> bool:
    config = getattr(model, "config", None)
    return getattr(config, POOLING_KEY, None) == "mean"


def head_in_output_units(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's weight and bias with the config's fixed output scale and shift folded in (a copy)."""
    weight, bias = model.classifier.weight.detach().clone(), model.classifier.bias.detach().clone()
    affine = getattr(model.config, OUTPUT_KEY, None)
    if affine:
        weight, bias = weight * affine["scale"], bias * affine["scale"] + affine["shift"]
    return weight, bias


def save_sentence_transformer(model: nn.Module, tokenizer: Any, folder: Path, max_length: int) -> None:
    """Write a mean-pooled classifier as a sentence-transformers model, the layout that library (and
    SetFit-style tools) read: the encoder at the top (a plain transformers folder: `AutoModel` loads it), a
    mean Pooling module, and the head as a Dense module without activation, so `SentenceTransformer(folder)
    .encode(texts)` returns the class logits. The labels are in config.json (`id2label`)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Pooling, Transformer

    model.base_model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    weight, bias = head_in_output_units(model)
    head = model.classifier
    modules = [
        Transformer(str(folder), max_seq_length=max_length),
        Pooling(model.config.hidden_size, "mean"),
        Dense(
            head.in_features,
            head.out_features,
            activation_function=nn.Identity(),
            init_weight=weight,
            init_bias=bias,
        ),
    ]
    SentenceTransformer(modules=modules, device="cpu").save(str(folder), create_model_card=False)


def sentence_transformer_logits(folder: Path, texts: list[str]) -> torch.Tensor:
    """The class logits of `texts` from a folder `save_sentence_transformer` wrote, computed by the
    sentence-transformers library itself."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    return model.encode(texts, convert_to_tensor=True, batch_size=len(texts)).float()
