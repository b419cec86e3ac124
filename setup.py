"""kbind: Kaldi's hybrid HMM training recipes in PyTorch.

``pip install -e .`` compiles the native core in ``cbridge/`` through cffi
(API mode): see ``cbridge/build_native.py``.
"""

from setuptools import find_packages, setup

setup(
    name="kbind",
    version="0.1.0",
    description="Kaldi-style hybrid HMM acoustic model training (frame cross-entropy, "
                "LF-MMI, NG-SGD) in PyTorch, reading and writing Kaldi's files",
    python_requires=">=3.9",
    packages=find_packages(include=["kbind", "kbind.*"]),
    setup_requires=["cffi>=1.15"],
    cffi_modules=["cbridge/build_native.py:ffibuilder"],
    install_requires=[
        "cffi>=1.15",
        "numpy>=1.22",
        "torch>=2.1",
        "kaldifst>=1.7",
        "soundfile>=0.12",
        "tqdm",
        "pyyaml",
    ],
    extras_require={
        "test": ["pytest", "kaldiio", "kaldi-native-fbank"],
    },
    zip_safe=False,
)
