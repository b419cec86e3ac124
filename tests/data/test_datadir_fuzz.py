"""Random bytes in data-dir files give KaldiFormatError only."""

import numpy as np

from kbind.data import DataDir, validate_data_dir
from kbind.io import KaldiFormatError

FILES = ["wav.scp", "text", "utt2spk", "spk2utt", "segments", "utt2dur", "spk2gender",
         "utt2num_frames", "reco2file_and_channel"]


def test_random_bytes_in_data_dir_files(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(60):
        d = tmp_path / f"d{i}"
        d.mkdir()
        for name in rng.choice(FILES, size=3, replace=False):
            data = rng.integers(0, 256, int(rng.integers(0, 120)), dtype=np.uint8).tobytes()
            if i % 2:
                data = b"u1 a 1\nu2 b 2\n" + data
            (d / name).write_bytes(data)
        for fn in (DataDir.load, lambda p: validate_data_dir(p, raise_on_error=False)):
            try:
                fn(d)
            except KaldiFormatError:
                pass
