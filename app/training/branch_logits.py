"""Branch outputs on the evaluation data, each computed once per network and row set (branch outputs are
deterministic; calibration, MVSA and the final evaluation ask for the same rows several times)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from app.training.branch_stages import AudioStage, FaceStage
from app.training.common import softmax
from app.training.face_model import MiniXception
from app.training.fusion import FaceClassifier, TextClassifier
from app.training.text_stage import TextStage
from app.training.train_audio import predict_logits
from app.training.train_face import face_logits
from app.training.train_text import text_logits


class BranchLogits:
    """Memoised branch logits: text rows (of ``TextData``), FER2013 PublicTest rows, CREMA-D clips.

    Entries are keyed by the network object and the row indices; the networks are kept alive by the memo so
    an ``id`` is never reused for another network.
    """

    def __init__(self, t: TextStage, f: FaceStage, a: AudioStage, audio_map: torch.Tensor) -> None:
        self.states, self.split = t.data.states, t.data.split
        self.x = f.x
        self.public_all = f.public
        self.public_pos = np.full(len(f.fer.labels), -1)
        self.public_pos[f.public] = np.arange(len(f.public))
        self.audio_net, self.audio_feats = a.net, a.feats
        self.audio_map = audio_map
        self.face_clf: FaceClassifier | None = None  # the default classifier of :meth:`face`
        self._memo: dict[tuple[str, int, int], tuple[object, np.ndarray]] = {}

    def _get(self, kind: str, key: object, idx: np.ndarray, fn: Callable[[], np.ndarray]) -> np.ndarray:
        k = (kind, id(key), hash(np.asarray(idx).tobytes()))
        if k not in self._memo:
            self._memo[k] = (key, fn())
        return self._memo[k][1]

    def text(self, clf: TextClassifier, idx: np.ndarray) -> np.ndarray:
        """3 sentiment logits float32 [len(idx), 3] of text classifier ``clf`` on text rows ``idx``."""
        return self._get("text", clf, idx, lambda: text_logits(clf, self.states, idx, self.split))

    def emotion_public(self, net: MiniXception, rows: np.ndarray) -> np.ndarray:
        """7 emotion logits [len(rows), 7] (with the shipped test-time views) of PublicTest ``rows``; the
        network runs once per net on all of PublicTest (every face evaluation uses PublicTest or a half)."""
        assert (self.public_pos[rows] >= 0).all()
        z = self._get("face7", net, self.public_all, lambda: face_logits(net, self.x[self.public_all], True))
        rows_z: np.ndarray = z[self.public_pos[rows]]
        return rows_z

    def face(self, rows: np.ndarray, clf: FaceClassifier | None = None) -> np.ndarray:
        """3-sentiment log-probabilities [len(rows), 3] of the face classifier ``clf`` (default
        :attr:`face_clf`) on PublicTest ``rows``."""
        clf = self.face_clf if clf is None else clf
        assert clf is not None, "set face_clf or pass clf"
        with torch.no_grad():
            out = clf.from_emotion_logits(torch.from_numpy(self.emotion_public(clf.net, rows)))
        return out.numpy()

    def audio6(self, idx: np.ndarray) -> np.ndarray:
        """6 emotion logits [len(idx), 6] of the audio network on CREMA-D clips ``idx``."""
        return self._get(
            "audio6",
            self.audio_net,
            idx,
            lambda: predict_logits(self.audio_net, [self.audio_feats[i] for i in idx]),
        )

    def audio(self, idx: np.ndarray) -> np.ndarray:
        """3-sentiment log-probabilities [len(idx), 3] of the audio branch on CREMA-D clips ``idx``."""
        p3: np.ndarray = softmax(self.audio6(idx)) @ self.audio_map.numpy().T
        return np.log(p3 + 1e-12)
