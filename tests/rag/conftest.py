"""Fixtures of the rag tests: small documents (Markdown, HTML, text, a real PDF, broken files) and a tiny
random-weight sentence-transformers model directory with a locally trained tokenizer (a second, different
embedding model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

MARKDOWN = """# Limpieza

## Blanquear la ropa

La lejía blanquea la ropa blanca. Diluye un tapón en cinco litros de agua fría.

## Quitar manchas de vino

El vino tinto se quita con sal y agua con gas.
"""

HTML = """<html><head><title>t</title><style>p {color: red}</style></head><body>
<h1>Garden</h1><p>Tomatoes need six hours of sun a day.</p><script>var injected = 1;</script>
<h2>Water</h2><p>Water the roots early in the morning.</p></body></html>"""


def make_pdf(path: Path, lines: list[str]) -> Path:
    """A valid one-page PDF whose text is `lines` (Helvetica), written by hand with a correct xref table."""
    text = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(f"({line}) Tj T*" for line in lines) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(text)} >>\nstream\n{text}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(out)
    return path


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    (root / "garden").mkdir(parents=True)
    (root / "limpieza.md").write_text(MARKDOWN)
    (root / "garden" / "tomatoes.html").write_text(HTML)
    (root / "notes.txt").write_text("The office opens at nine.\n\nThe printer is on the second floor.\n")
    make_pdf(root / "manual.pdf", ["The boiler pressure must stay between one and two bar."])
    (root / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj garbage")  # a PDF header and nothing readable
    (root / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))  # not UTF-8
    return root


@pytest.fixture(scope="session")
def tiny_st_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sentence-transformers directory: a 2-layer random BERT, a WordPiece tokenizer trained here, mean
    pooling and normalization (seconds to build, no network)."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("st") / "tiny-st"
    root.mkdir()
    corpus = [MARKDOWN, HTML, "The office opens at nine. The printer is on the second floor."] * 20
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(
        corpus, trainers.WordPieceTrainer(vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
    )
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_max_length=128,
    )
    fast.save_pretrained(root)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(root)
    (root / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
            ]
        )
    )
    (root / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128, "do_lower_case": False}))
    (root / "1_Pooling").mkdir()
    (root / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True})
    )
    (root / "2_Normalize").mkdir()
    return root
