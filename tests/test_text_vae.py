"""The LSTM text VAE: shapes, masking and causality, skip wiring, perplexity with a known answer, bad data, and
seconds-long runs through the config (standard, skip, SA-VAE) on a tiny corpus."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import read_metrics
from test_text_data import write_corpus
from vaelab.build import build
from vaelab.data.spec import DataSpec
from vaelab.data.text import BOS, PAD, UNK, TextData
from vaelab.diagnostics.base import run_evaluators
from vaelab.diagnostics.iw_nll import ImportanceSampledNLL
from vaelab.diagnostics.mutual_information import MutualInformation
from vaelab.errors import ConfigError
from vaelab.evaluation import evaluation_context
from vaelab.models.text_vae import TextVAE
from vaelab.train import train

WORDS = "alpha beta gamma delta eps zeta eta theta iota kappa".split()


def corpus_lines(n: int, seed: int) -> list[str]:
    """Two kinds of sentences (first half / second half of WORDS), 2-12 words each."""
    g = torch.Generator().manual_seed(seed)
    lines = []
    for _ in range(n):
        topic = int(torch.randint(2, (1,), generator=g))
        length = int(torch.randint(2, 13, (1,), generator=g))
        lines.append(" ".join(WORDS[5 * topic + int(i)] for i in torch.randint(5, (length,), generator=g)))
    return lines


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path, train=corpus_lines(256, 0), valid=corpus_lines(64, 1), test=corpus_lines(64, 2))


def small_model(data: TextData, **kwargs) -> TextVAE:
    torch.manual_seed(0)
    return TextVAE(
        data.spec, **({"latent_dim": 4, "embedding_dim": 8, "encoder_hidden": 16, "decoder_hidden": 16} | kwargs)
    )


def tiny_data(root) -> TextData:
    return TextData(
        dataset="tiny", data_dir=str(root), train="train.txt", valid="valid.txt", test="test.txt", batch_size=16
    )


def test_text_model_on_image_data_is_a_config_error(make_cfg):
    with pytest.raises(ConfigError, match="model=text_vae needs text data"):
        TextVAE(DataSpec(name="mnist", x_shape=(1, 28, 28)))
    with pytest.raises(ConfigError, match="data=synthetic_manifold has samples of shape"):
        build(make_cfg("model=text_vae"))


def test_padding_does_not_change_the_posterior_or_the_nll(corpus):
    model = small_model(tiny_data(corpus)).eval()
    x = tiny_data(corpus).split("train")["x"][:8]
    padded = torch.cat([x, torch.full((8, 5), PAD)], dim=1)
    q, q_padded = model.encode({"x": x}), model.encode({"x": padded})
    assert torch.allclose(q.mean, q_padded.mean, atol=1e-6) and torch.allclose(q.logvar, q_padded.logvar, atol=1e-6)
    z = q.mean
    nll = model.reconstruction_nll(x, model.decode(z, {"x": x}))
    assert torch.allclose(nll, model.reconstruction_nll(padded, model.decode(z, {"x": padded})), atol=1e-5)
    assert nll.shape == (8,) and (nll > 0).all()


@pytest.mark.parametrize("skip", [False, True])
def test_decoder_is_causal(corpus, skip):
    model = small_model(tiny_data(corpus), skip=skip, decoder_layers=2).eval()
    x = tiny_data(corpus).split("train")["x"][:4].clone()
    x[:, 1:] = torch.where(x[:, 1:] == PAD, PAD, 4)  # rows of one word, so changing one position is visible
    z = torch.randn(4, 4)
    changed = x.clone()
    changed[:, 3] = torch.where(x[:, 3] == PAD, PAD, 5)
    out, out_changed = model.decode(z, {"x": x}), model.decode(z, {"x": changed})
    assert torch.allclose(out[:, :3], out_changed[:, :3])  # positions 0..2 predict tokens 1..3: unaffected
    assert not torch.allclose(out[:, 3:], out_changed[:, 3:])


def test_word_dropout_replaces_decoder_input_words_by_unk_in_training_only(corpus):
    data = tiny_data(corpus)
    model = small_model(data, word_dropout=0.5)
    seen = []
    model.decoder_embedding.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    x = data.split("train")["x"]
    inputs = x[:, : int((x != PAD).sum(1).max())][:, :-1]
    model.decode(torch.zeros(len(x), 4), {"x": x})
    fed = seen[-1]
    words = inputs != PAD
    words[:, 0] = False
    assert (fed[:, 0] == BOS).all() and (fed[inputs == PAD] == PAD).all()
    assert ((fed == inputs) | (fed == UNK))[words].all()
    assert 0.4 < float((fed[words] == UNK).float().mean()) < 0.6  # ~2,000 words: the std is about 0.01
    model.eval()
    model.decode(torch.zeros(len(x), 4), {"x": x})
    assert torch.equal(seen[-1], inputs)
    with pytest.raises(ConfigError, match="model.word_dropout=1"):
        small_model(data, word_dropout=1)


def test_skip_feeds_z_to_upper_layers_and_the_softmax(corpus):
    data = tiny_data(corpus)
    standard, skip = small_model(data, decoder_layers=2), small_model(data, decoder_layers=2, skip=True)
    assert standard.decoder[1].input_size == 16 and skip.decoder[1].input_size == 16 + 4
    assert standard.to_logits.in_features == 16 and skip.to_logits.in_features == 16 + 4
    # with the LSTM output silenced, only the skip path can carry z to the logits
    for model in (standard, skip):
        with torch.no_grad():
            for p in model.decoder[1].parameters():
                p.zero_()
    x = data.split("train")["x"][:2]
    for model, depends in ((standard, False), (skip, True)):
        a, b = (model.logits(model.decode(torch.full((2, 4), v), {"x": x})) for v in (0.0, 3.0))
        assert torch.allclose(a, b) != depends


def test_uniform_decoder_has_perplexity_equal_to_the_vocabulary_size(corpus):
    """Zero softmax weights: every next token has probability 1/V; q = p = N(0, I) (zero posterior head), so the
    importance weights are exactly 1 and -log p(x) = (tokens, </s> counted, <s> not) x log V for any K."""
    data = tiny_data(corpus)
    model = small_model(data)
    with torch.no_grad():
        for layer in (model.to_logits, model.to_posterior):
            layer.weight.zero_()
            layer.bias.zero_()
    test = data.split("test")
    tokens = model.token_count(test)
    assert torch.equal(tokens, (test["x"] != PAD).sum(1) - 1)
    nll = model.reconstruction_nll(test["x"], model.decode(torch.randn(len(tokens), 4), test))
    assert torch.allclose(nll, tokens * math.log(data.spec.vocab_size), rtol=1e-5)
    evaluators = {"mi": MutualInformation(points=64), "iw_nll": ImportanceSampledNLL(samples=7, points=40, max_rows=30)}
    results = run_evaluators(evaluators, evaluation_context(model, "test", test, 16)).results()
    assert results["iw_ppl"] == pytest.approx(data.spec.vocab_size, rel=1e-5)
    per_doc = float(tokens[:40].float().mean()) * math.log(data.spec.vocab_size)
    assert results["iw_nll"] == pytest.approx(per_doc, rel=1e-5)
    assert results["mi"] == pytest.approx(0.0, abs=1e-6)


RUN = [
    "experiment=text_ptb",
    "data.dataset=tiny",
    "data.train=train.txt",
    "data.valid=valid.txt",
    "data.test=test.txt",
    "data.n_train=null",
    "data.batch_size=16",
    "model.latent_dim=4",
    "model.embedding_dim=16",
    "model.encoder_hidden=32",
    "model.decoder_hidden=32",
    "trainer.max_epochs=3",
    "kl_warmup.epochs=1",
    "callbacks.diagnostics.evaluators.iw_nll.samples=5",
    "callbacks.diagnostics.evaluators.iw_nll.points=20",
    "callbacks.diagnostics.evaluators.iw_nll.max_rows=50",
    "callbacks.progress_bar=null",
    "torch_threads=1",
]


@pytest.mark.parametrize(
    "extra",
    [["model.skip=false"], ["model.skip=true", "model.decoder_layers=2"], ["inference=sa", "inference.steps=2"]],
    ids=["standard", "skip", "sa"],
)
def test_short_text_run_through_the_config(make_cfg, corpus, tmp_path, extra):
    result = train(make_cfg(*RUN, f"paths.data_dir={corpus}", *extra))
    metrics = read_metrics(tmp_path / "run")
    assert result["status"] == "completed" == metrics["status"]
    assert metrics["model"] == ("SemiAmortized" if "inference=sa" in extra else "TextVAE")
    assert metrics["true_vocab_size"] == 14 and metrics["true_docs"] == {"train": 256, "val": 64, "test": 64}
    assert "recon_mse" not in metrics
    tokens_per_doc = metrics["true_tokens_per_doc"]["test"]
    assert 5 < tokens_per_doc < 9  # 2-12 words and </s>
    # ~log 5 nats per word for a model that learnt the two word sets; a uniform one would pay log 14
    assert metrics["iw_nll_per_token"] < math.log(14) and metrics["iw_ppl"] == pytest.approx(
        math.exp(metrics["iw_nll_per_token"])
    )
    for key in ("elbo", "kl", "mi", "active_units", "iw_nll"):
        assert math.isfinite(metrics[key]), key
