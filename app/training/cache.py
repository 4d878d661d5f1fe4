"""On-disk caches (gitignored ``.cache/``) for expensive, deterministic preprocessing: CREMA-D log-mels."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from app.contract import SAMPLE_RATE
from app.preprocessing.audio import log_mel

#: cache file used by each cache function in this process (the pipeline reports which were warm)
USED: dict[str, Path] = {}


def _key(items: list[str]) -> str:
    return hashlib.sha256("\n".join(items).encode()).hexdigest()[:16]


def crema_logmels(files: list[str], cache_dir: Path) -> list[np.ndarray]:
    """Log-mel [T, 64] float32 of every clip (``app.preprocessing.audio.log_mel``), cached as one npz."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"crema_logmel_{_key([Path(f).name for f in files])}.npz"
    USED["crema_logmel"] = path
    if path.exists():
        z = np.load(path)
        flat, offsets = z["flat"], z["offsets"]
        return [flat[offsets[i] : offsets[i + 1]] for i in range(len(files))]
    feats = []
    for f in tqdm(files, desc="log-mel CREMA-D", mininterval=5):
        x, sr = sf.read(f, dtype="float32", always_2d=False)
        if sr != SAMPLE_RATE:
            raise ValueError(f"{f}: sample rate {sr} != {SAMPLE_RATE}")
        if x.ndim == 2:
            x = x.mean(axis=1)
        feats.append(log_mel(x))
    offsets = np.concatenate([[0], np.cumsum([len(m) for m in feats])])
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, flat=np.concatenate(feats), offsets=offsets)
    tmp.rename(path)
    return feats


def text_states(
    texts: list[str], tokenizer_path: Path, cache_dir: Path, split_layer: int, batch_size: int = 64
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Tokenise with ``app.preprocessing.text`` and run the frozen MiniLM layers ``[0, split_layer)``.

    Returns per text: ``input_ids`` int64 [L], hidden states float16 [L, 384] after layer ``split_layer``,
    and the frozen sentence embedding float32 [N, 384] (mean-pooled last layer) for baselines.
    Cached in ``cache_dir`` keyed by the texts and ``split_layer``.
    """
    import torch  # noqa: PLC0415

    from app.preprocessing.text import encode_text, load_tokenizer  # noqa: PLC0415
    from app.training.text_model import LAYERS, load_minilm, masked_mean  # noqa: PLC0415

    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"text_states_L{split_layer}_{_key(texts)}.npz"
    USED["text_states"] = path
    tok = load_tokenizer(tokenizer_path)
    ids = [encode_text(tok, t).input_ids for t in texts]
    if path.exists():
        z = np.load(path)
        flat, off = z["flat"], z["offsets"]
        return ids, [flat[off[i] : off[i + 1]] for i in range(len(texts))], z["sentence"]
    model = load_minilm().eval()
    order = np.argsort([len(x) for x in ids], kind="stable")
    states: list[np.ndarray | None] = [None] * len(texts)
    sentence = np.zeros((len(texts), 384), dtype=np.float32)
    with torch.inference_mode():
        for s in tqdm(
            range(0, len(order), batch_size), desc=f"MiniLM layers 0-{split_layer - 1}", mininterval=10
        ):
            idx = order[s : s + batch_size]
            length = max(len(ids[i]) for i in idx)
            x = torch.zeros((len(idx), length), dtype=torch.long)
            m = torch.zeros((len(idx), length), dtype=torch.long)
            for r, i in enumerate(idx):
                x[r, : len(ids[i])] = torch.from_numpy(ids[i])
                m[r, : len(ids[i])] = 1
            h = model.run_layers(model.embed(x), m, 0, split_layer)
            top = model.run_layers(h, m, split_layer, LAYERS)
            sentence[idx] = masked_mean(top, m).numpy()
            h16 = h.to(torch.float16).numpy()
            for r, i in enumerate(idx):
                states[i] = h16[r, : len(ids[i])]
    assert all(s is not None for s in states)
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in ids])])
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, flat=np.concatenate(states), offsets=offsets, sentence=sentence)  # type: ignore[arg-type]
    tmp.rename(path)
    return ids, states, sentence  # type: ignore[return-value]


def mvsa_faces(image_paths: list[str], cache_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Largest detected face of every MVSA image (``app.preprocessing.face.largest_face_input``).

    Returns ``faces`` float32 [N, 1, 64, 64] (zeros where none) and ``found`` bool [N]; cached.
    """
    from PIL import Image  # noqa: PLC0415

    import app.preprocessing.face as face_mod  # noqa: PLC0415
    import app.preprocessing.image as image_mod  # noqa: PLC0415
    from app.preprocessing.face import largest_face_input  # noqa: PLC0415

    cache_dir.mkdir(parents=True, exist_ok=True)
    # the key covers the detection and normalisation code, so a change there re-runs the detection
    code = [Path(str(m.__file__)).read_text() for m in (face_mod, image_mod)]
    path = cache_dir / f"mvsa_faces_{_key([Path(p).name for p in image_paths] + code)}.npz"
    USED["mvsa_faces"] = path
    if path.exists():
        z = np.load(path)
        return z["faces"], z["found"]
    faces = np.zeros((len(image_paths), 1, 64, 64), dtype=np.float32)
    found = np.zeros(len(image_paths), dtype=bool)
    for i, p in enumerate(tqdm(image_paths, desc="face detection MVSA", mininterval=10)):
        try:
            with Image.open(p) as im:
                face, _ = largest_face_input(im.convert("RGB"))
        except OSError:
            face = None
        if face is not None:
            faces[i], found[i] = face, True
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, faces=faces, found=found)
    tmp.rename(path)
    return faces, found
