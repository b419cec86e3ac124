"""Matrices, vectors and compressed matrices against Kaldi-written files."""

import io

import numpy as np
import pytest
import torch

from kbind.io import (CompressionMethod, compress, decompress, read_object, read_table,
                      write_object, write_table)
from kbind.io.matrix import read_matrix, write_matrix
from kbind.io.stream import KaldiInput

TABLES = ["feats_mfcc13", "feats_fbank40"]


def _expected(kaldi_io_dir, name):
    npz = np.load(kaldi_io_dir / f"{name}.expected.npz")
    return {k: npz[k] for k in npz.files}


@pytest.mark.parametrize("name", TABLES + [t + ".txt" for t in TABLES])
def test_float_matrix_archives(kaldi_io_dir, name):
    exp = _expected(kaldi_io_dir, name)
    got = list(read_table(f"ark:{kaldi_io_dir / name}.ark", kind="matrix"))
    assert [k for k, _ in got] == list(exp)
    for key, mat in got:
        assert mat.dtype == np.float32
        np.testing.assert_array_equal(mat, exp[key].reshape(mat.shape) if exp[key].size == 0
                                      else exp[key])
        assert mat.shape == exp[key].shape


@pytest.mark.parametrize("name", ["cmat_speech_mfcc13", "cmat_speech_fbank40",
                                  "cmat_2byte_auto_mfcc13", "cmat_2byte_auto_fbank40"])
def test_compressed_archives_decompress_bit_exact(kaldi_io_dir, name):
    exp = _expected(kaldi_io_dir, name)
    got = dict(read_table(f"ark:{kaldi_io_dir / name}.ark"))
    assert list(got) == list(exp)
    for key in exp:
        np.testing.assert_array_equal(got[key], exp[key])


@pytest.mark.parametrize("method, prefix", [(CompressionMethod.SPEECH_FEATURE, "cmat_speech"),
                                            (CompressionMethod.TWO_BYTE_AUTO, "cmat_2byte_auto")])
@pytest.mark.parametrize("table", ["mfcc13", "fbank40"])
def test_compression_bytes_equal_kaldis(kaldi_io_dir, tmp_path, method, prefix, table):
    """Compressing Kaldi's input matrices gives Kaldi's compressed archive."""
    out = tmp_path / "c.ark"
    with write_table(f"ark:{out}", compression=method) as w:
        for key, mat in read_table(f"ark:{kaldi_io_dir}/feats_{table}.ark"):
            if mat.size:
                w.write(key, mat)
    assert out.read_bytes() == (kaldi_io_dir / f"{prefix}_{table}.ark").read_bytes()


def _matrices_for_compression():
    """Matrices that reach every branch of Kaldi's compression code: random and
    feature-like data, constant columns and matrices (Kaldi's ``min + (1 + |min|)``
    range), ranges of 1e-30 to 1e38, 1 to 4 rows (the sorted-percentile branch
    of ``CM``) and 5, and values on and beside the rounding points of each grid."""
    rng = np.random.default_rng(11)
    m = {}
    m["random"] = rng.normal(0.0, 3.0, (23, 7))
    fbank = rng.normal(10.0, 3.0, (60, 40)) + np.linspace(-5, 5, 40)
    fbank[:, 3] = 2.5                                 # a constant column
    fbank[:, 17] = -1e4                               # another, far from the rest
    fbank[7, 30] = 1e5                                # one huge value: a large range
    m["fbank_like"] = fbank
    m["one_row"] = rng.normal(0.0, 1.0, (1, 13))
    for rows in (2, 3, 4, 5):
        m[f"rows{rows}"] = rng.normal(0.0, 1.0, (rows, 6))
    m["one_value"] = np.array([[0.21568628]])
    m["constant"] = np.full((12, 3), -7.25)
    m["zeros"] = np.zeros((9, 2))
    m["ulp_apart"] = np.full((9, 3), 9.468526e-08)    # a range of one ulp: 0/0 in FloatToChar
    m["ulp_apart"][0, 0] = np.nextafter(np.float32(9.468526e-08), np.float32(1))
    m["tiny"] = rng.normal(0.0, 1e-30, (10, 4))
    m["huge"] = rng.normal(0.0, 1e36, (10, 4))
    k = np.arange(0, 256, dtype=np.float64)
    m["byte_grid"] = np.stack([k, k + 0.499, k + 0.5, k + 0.501, k - 0.5], 1)   # rounding points
    m["unit_grid"] = np.stack([k / 255, (k + 0.5) / 255, (k - 0.5) / 255], 1)   # of CM3, CM2 and
    m["int16_grid"] = rng.integers(-33000, 33000, (40, 5)) + rng.choice([0, 0.5, -0.5], (40, 5))
    m["half_steps"] = np.round(rng.normal(0.0, 1.0, (64, 8)) * 64) / 64        # CM's 1/64 steps
    return {key: v.astype(np.float32) for key, v in m.items()}


@pytest.mark.parametrize("method", list(CompressionMethod))
def test_compression_bytes_equal_kaldis_copy_feats(kaldi, tmp_path, method):
    """kbind compresses as Kaldi does: ``copy-feats --compress=true
    --compression-method=N`` on the same uncompressed archive writes the same
    bytes, and both read back to the same floats as Kaldi decompresses them."""
    mats = _matrices_for_compression()
    plain, theirs, ours = tmp_path / "plain.ark", tmp_path / "kaldi.ark", tmp_path / "kbind.ark"
    with write_table(f"ark:{plain}") as w:
        for key, mat in mats.items():
            w.write(key, mat)
    kaldi("copy-feats", "--compress=true", f"--compression-method={int(method)}",
          f"ark:{plain}", f"ark:{theirs}")
    with write_table(f"ark:{ours}", compression=method) as w:
        for key, mat in read_table(f"ark:{plain}"):
            w.write(key, mat)
    if ours.read_bytes() != theirs.read_bytes():
        theirs_cm = dict(read_table(f"ark:{theirs}", kind="compressed_matrix"))
        ours_cm = dict(read_table(f"ark:{ours}", kind="compressed_matrix"))
        differ = [k for k in mats if theirs_cm[k] != ours_cm[k]]
        pytest.fail(f"{method.name}: compressed bytes differ from Kaldi's for {differ}")
    kaldi("copy-feats", f"ark:{theirs}", f"ark:{tmp_path / 'back.ark'}")
    kaldi_back = dict(read_table(f"ark:{tmp_path / 'back.ark'}"))
    for key, mat in read_table(f"ark:{ours}"):
        np.testing.assert_array_equal(mat.view(np.uint32), kaldi_back[key].view(np.uint32),
                                      err_msg=key)


@pytest.mark.parametrize("method", list(CompressionMethod))
def test_every_compression_method_round_trips_within_its_precision(method):
    rng = np.random.default_rng(0)
    mat = rng.normal(3.0, 2.0, size=(37, 11)).astype(np.float32)
    if method == CompressionMethod.ONE_BYTE_ZERO_ONE:
        mat = rng.uniform(0, 1, size=(37, 11)).astype(np.float32)
    elif method == CompressionMethod.ONE_BYTE_UNSIGNED_INTEGER:
        mat = rng.integers(0, 256, size=(37, 11)).astype(np.float32)
    elif method == CompressionMethod.TWO_BYTE_SIGNED_INTEGER:
        mat = rng.integers(-32768, 32768, size=(37, 11)).astype(np.float32)
    cm = compress(mat, method)
    back = decompress(cm)
    span = float(mat.max() - mat.min())
    # Closed-form bounds: half a quantisation step of each grid.
    step = {"CM2": span / 65535, "CM3": span / 255, "CM": span / 64}[cm.token]
    if method in (CompressionMethod.ONE_BYTE_UNSIGNED_INTEGER,
                  CompressionMethod.TWO_BYTE_SIGNED_INTEGER):
        step = 1e-3  # integers are represented exactly (up to float rounding)
    assert np.abs(back - mat).max() <= step * 0.51 + 1e-5 * max(1.0, np.abs(mat).max())
    f = io.BytesIO()
    cm.write(f, True)
    inp = KaldiInput(io.BytesIO(f.getvalue()), "mem")
    again = read_matrix(inp, True)
    np.testing.assert_array_equal(again, back)


def test_compress_rejects_nan_and_empty():
    with pytest.raises(ValueError, match="NaN"):
        compress(np.array([[1.0, np.nan]], dtype=np.float32))
    with pytest.raises(ValueError, match="empty"):
        compress(np.zeros((0, 0), dtype=np.float32))


@pytest.mark.parametrize("binary", [True, False])
def test_matrix_and_vector_round_trip(tmp_path, binary):
    rng = np.random.default_rng(1)
    values = {
        "m32": rng.normal(size=(4, 3)).astype(np.float32),
        "m64": rng.normal(size=(2, 5)),
        "v32": rng.normal(size=7).astype(np.float32),
        "empty": np.zeros((0, 0), dtype=np.float32),
        "torch": torch.arange(6, dtype=torch.float32).reshape(2, 3),
    }
    spec = "ark" if binary else "ark,t"
    with write_table(f"{spec}:{tmp_path / 'x.ark'}") as w:
        for k, v in values.items():
            w.write(k, v)
    got = dict(read_table(f"ark:{tmp_path / 'x.ark'}"))
    for k, v in values.items():
        v = v.numpy() if isinstance(v, torch.Tensor) else v
        if binary:
            assert got[k].dtype == v.dtype
            np.testing.assert_array_equal(got[k], v)
        else:
            # text keeps 7 significant digits (17 for doubles)
            np.testing.assert_allclose(got[k], v, rtol=1e-6, atol=1e-7)
            assert got[k].shape == v.shape


def test_text_matrix_bytes_match_kaldis_layout(kaldi_io_dir, tmp_path):
    """Our text writer reproduces Kaldi's text archive byte for byte when
    given the values Kaldi's own text reader decodes."""
    exp = _expected(kaldi_io_dir, "feats_mfcc13.txt")
    out = tmp_path / "t.ark"
    with write_table(f"ark,t:{out}") as w:
        for k, v in exp.items():
            w.write(k, v if v.size else np.zeros((0, 0), np.float32))
    assert out.read_bytes() == (kaldi_io_dir / "feats_mfcc13.txt.ark").read_bytes()


def test_read_and_write_single_objects(tmp_path):
    mat = np.arange(12, dtype=np.float32).reshape(3, 4)
    write_object(str(tmp_path / "m.mat"), mat)
    np.testing.assert_array_equal(read_object(str(tmp_path / "m.mat")), mat)
    write_object(str(tmp_path / "v.txt"), np.array([1.5, 2.5], dtype=np.float32), binary=False)
    assert (tmp_path / "v.txt").read_bytes() == b" [ 1.5 2.5 ]\n"
    np.testing.assert_array_equal(read_object(str(tmp_path / "v.txt"), kind="vector"), [1.5, 2.5])


def test_double_matrix_binary_layout():
    f = io.BytesIO()
    write_matrix(f, np.array([[1.0, 2.0]]), True)
    assert f.getvalue() == b"DM \x04\x01\x00\x00\x00\x04\x02\x00\x00\x00" + \
        np.array([1.0, 2.0]).tobytes()
