"""egs/digits end to end with the chain and CE stages (slow: run with ``-m slow``).

Runs ``egs/digits/run.py --corpus_size tiny`` through every stage (corpus,
features, lang, LM, graphs, oracle, flat-start chain prep, TDNN-F LF-MMI
training, chain HCLG, decoding, alignment with the chain model, BLSTM CE
training, CE graph and decoding, realignment, CE retraining and decoding, and
the full-biphone flat-start system)
with small models and few epochs, and checks
the artefacts and that the objective and WER lines come out. The tiny corpus
is far too small to learn much; the full-size run is ``make run``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_digits_chain_tiny(tmp_path):
    cmd = [sys.executable, str(REPO / "egs" / "digits" / "run.py"), "--corpus_size", "tiny",
           "--data", str(tmp_path / "data"), "--exp", str(tmp_path / "exp"),
           "--chain.num_epochs", "2", "--chain.minibatches_per_iter", "2",
           "--chain.num_valid_utts", "3", "--chain.egs.minibatch_size", "4",
           "--chain.progress", "false", "--chain_decode.sets", "test",
           "--ce.num_epochs", "1", "--ce.minibatches_per_iter", "2",
           "--ce.num_valid_utts", "3", "--ce.egs.minibatch_size", "4",
           "--ce.progress", "false"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    assert out.returncode == 0, out.stderr[-3000:]
    tree = tmp_path / "exp" / "chain" / "e2e_tree"
    for name in ("tree", "0.trans_mdl", "den.fst", "normalization.fst", "fst.scp",
                 "phone_lm.fst"):
        assert (tree / name).exists(), name
    exp = tmp_path / "exp" / "chain" / "tdnnf_e2e"
    assert (exp / "final.pt").exists() and (exp / "graph" / "HCLG.fst").exists()
    epochs = json.loads((exp / "progress.json").read_text())
    assert len(epochs) == 2 and all(e["train_objf"] < 0 for e in epochs)
    assert "Overall average objective function for 'output'" in \
        (exp / "log" / "train.log").read_text()
    assert re.search(r"%WER [0-9.]+ \[", out.stdout)
    summary = json.loads((exp / "decode_test" / "summary.json").read_text())
    assert summary["utterances"] > 0
    assert (tmp_path / "data" / "lang_chain_test" / "G.fst").exists()
    times = json.loads((tmp_path / "exp" / "stage_times.json").read_text())
    assert "chain_train" in times
    # CE: alignment dirs Kaldi could read, two BLSTMs with priors, their WERs
    ce = tmp_path / "exp" / "ce"
    for ali in ("ali_chain", "ali_blstm1"):
        summary = json.loads((ce / ali / "summary.json").read_text())
        assert summary["utterances"] > 0 and summary["failed"] < summary["utterances"]
        assert (ce / ali / "ali.1.gz").exists() and (ce / ali / "final.mdl").exists()
    for model in ("blstm1", "blstm2"):
        assert (ce / model / "final.pt").exists()
        assert (ce / model / "ali_train_pdf.counts").read_text().startswith("[ ")
        assert (ce / model / "decode_test" / "summary.json").exists()
    assert len(re.findall(r"digits test, CE BLSTM", out.stdout)) == 2
    # the full left-biphone flat-start system (stage 17)
    bi = tmp_path / "exp" / "biphone" / "chain"
    info = json.loads((bi / "e2e_tree" / "info.json").read_text())
    assert info["num_pdfs"] > json.loads((tree / "info.json").read_text())["num_pdfs"]
    assert (bi / "tdnnf_e2e" / "decode_test" / "summary.json").exists()
    assert re.search(r"digits test, chain TDNN-F \(flat-start, full biphone tree", out.stdout)
    assert len(re.findall(r"%WER [0-9.]+ \[", out.stdout)) >= 4
