"""The fused graph: three calibrated branches combined by a product of experts with prior correction.

    log p(y | x_S) = log π(y) + Σ_{m∈S} w_m (log p_m(y | x_m) − log π(y)) + [S ≠ ∅] b_y + const

With w_m = 1 and b = 0 (the shipped default unless learned fusion wins on MVSA) this is exactly DESIGN.md's
Σ_{m∈S} log p_m(y|x_m) − (|S| − 1) log π(y). Each p_m is the branch's temperature-scaled probability,
re-targeted from the class prior of its own training corpus π_m to the common prior π by Bayes' rule
(Saerens et al., 2002): log p_m ← log_softmax(log p_m − log π_m + log π).

Absent modalities (modality_mask ≤ 0.5, or not finite) are removed with ``torch.where`` selection (never by
multiplying with 0, which would let NaN/Inf through), their inputs are replaced by zeros before the branch
runs (so out-of-range token ids cannot crash the Gather), and their rows of ``modality_probabilities`` are π.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from app.training.audio_model import AudioCNN
from app.training.face_model import N_TTA_VIEWS, MiniXception, tta_mean, tta_views
from app.training.text_model import VOCAB, MiniLM, masked_mean
from app.training.whisper_audio import WhisperAudio


class TextClassifier(nn.Module):
    """BERT encoder (:class:`MiniLM`, 6 or 12 layers) → masked mean pooling → linear layer → 3 sentiment
    logits."""

    def __init__(self, encoder: MiniLM) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(384, 3)

    def pooled_from_states(self, h: torch.Tensor, attention_mask: torch.Tensor, start: int) -> torch.Tensor:
        """Sentence vector [B, 384] from hidden states after layer ``start``."""
        stop = len(self.encoder.layers)
        return masked_mean(self.encoder.run_layers(h, attention_mask, start, stop), attention_mask)

    def from_states(self, h: torch.Tensor, attention_mask: torch.Tensor, start: int) -> torch.Tensor:
        """Logits from hidden states after layer ``start`` (used to train on cached frozen lower layers)."""
        logits: torch.Tensor = self.head(self.dropout(self.pooled_from_states(h, attention_mask, start)))
        return logits

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.from_states(self.encoder.embed(input_ids), attention_mask, 0)


class FaceClassifier(nn.Module):
    """mini-Xception 7-emotion logits (averaged over the ``N_TTA_VIEWS`` test-time views of
    ``face_model.tta_views`` when ``tta``) → 3-sentiment log-probabilities log(M · softmax(z)), M [3, 7] a 0/1
    (or soft) emotion → sentiment map."""

    mapping: torch.Tensor  # buffer [3, 7]

    def __init__(self, net: MiniXception, mapping: torch.Tensor, tta: bool = True) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mapping", mapping.to(torch.float32))
        self.tta = tta

    def emotion_logits(self, face: torch.Tensor) -> torch.Tensor:
        """face float32 [B, 1, 64, 64] in [-1, 1] → 7 emotion logits [B, 7]."""
        if not self.tta:
            logits: torch.Tensor = self.net(face)
            return logits
        return tta_mean(self.net(tta_views(face)), face.shape[0])

    def forward(self, face: torch.Tensor) -> torch.Tensor:
        return self.from_emotion_logits(self.emotion_logits(face))

    def forward_present(self, face: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Like ``forward`` [B, 1, 64, 64] → [B, 3], but the network runs only on the rows where
        ``present`` [B] bool is true, plus one padding row so the batch is never empty (a text-only batch
        pays for one face instead of B × ``N_TTA_VIEWS``). Absent rows get the padding row's output; the
        fusion ignores them. Exported as NonZero + Gather + CumSum (no data-dependent control flow)."""
        idx = torch.cat([torch.nonzero(present).reshape(-1), torch.zeros(1, dtype=torch.int64)])  # [K + 1]
        sub = self(face.index_select(0, idx))  # [K + 1, 3]; the last row is the padding row
        count = present.to(torch.int64)
        pos = torch.where(present, torch.cumsum(count, 0) - 1, count.sum())  # row of ``sub`` for each row
        out: torch.Tensor = sub.index_select(0, pos)
        return out

    def from_emotion_logits(self, z: torch.Tensor) -> torch.Tensor:
        """7 emotion logits [B, 7] → 3-sentiment log-probabilities [B, 3] through the emotion map."""
        p7 = torch.softmax(z, dim=-1)
        return torch.log(p7 @ self.mapping.t() + 1e-12)

    def view_features(self, face: torch.Tensor) -> torch.Tensor:
        """Cacheable frozen part: [B, 1, 64, 64] → ``net.features`` of each view, [B, V, 128, 4, 4]
        (V = ``N_TTA_VIEWS`` with ``tta``, else 1)."""
        if not self.tta:
            return self.net.features(face)[:, None]
        f = self.net.features(tta_views(face))
        return f.reshape(N_TTA_VIEWS, face.shape[0], *f.shape[1:]).transpose(0, 1)

    def from_features(self, feat: torch.Tensor) -> torch.Tensor:
        """Same as ``forward`` from cached :meth:`view_features` [B, V, 128, 4, 4]."""
        b, v = feat.shape[:2]
        z = self.net.head(feat.reshape(b * v, *feat.shape[2:])).mean(dim=(2, 3))
        return self.from_emotion_logits(z.reshape(b, v, -1).mean(dim=1))


class AudioClassifier(nn.Module):
    """Audio CNN 6-emotion logits → 3-sentiment log-probabilities log(M · softmax(z)), M [3, 6]."""

    mapping: torch.Tensor  # buffer [3, 6]

    def __init__(self, net: AudioCNN | WhisperAudio, mapping: torch.Tensor) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mapping", mapping.to(torch.float32))

    def forward(self, audio_features: torch.Tensor, audio_mask: torch.Tensor) -> torch.Tensor:
        return self.from_emotion_logits(self.net(audio_features, audio_mask))

    def from_emotion_logits(self, z: torch.Tensor) -> torch.Tensor:
        """6 emotion logits [B, 6] → 3 sentiment log-probabilities [B, 3]."""
        p6 = torch.softmax(z, dim=-1)
        return torch.log(p6 @ self.mapping.t() + 1e-12)

    def forward_present(
        self, audio_features: torch.Tensor, audio_mask: torch.Tensor, present: torch.Tensor
    ) -> torch.Tensor:
        """As ``forward``; the Whisper expert runs only on the rows whose audio is present (``present`` bool
        [B]; :meth:`~app.training.whisper_audio.WhisperAudio.forward_present`), the log-mel CNN on all."""
        if isinstance(self.net, WhisperAudio):
            return self.from_emotion_logits(self.net.forward_present(audio_features, audio_mask, present))
        return self.forward(audio_features, audio_mask)


class Fusion(nn.Module):
    """Calibration + prior shift + (learned) product of experts. Inputs are raw branch logits [B, M, 3].

    Parameters: ``log_temperature`` [M] (fixed after calibration unless learned fusion trains it),
    ``weight`` [M] (w_m, 1 = PoE), ``bias`` [3] (b, 0 = PoE). Buffers: ``log_branch_prior`` [M, 3]
    (log π_m), ``log_prior`` [3] (log π).
    """

    log_branch_prior: torch.Tensor  # buffer [M, 3]
    log_prior: torch.Tensor  # buffer [3]

    def __init__(self, n_modalities: int = 3) -> None:
        super().__init__()
        self.log_temperature = nn.Parameter(torch.zeros(n_modalities), requires_grad=False)
        self.weight = nn.Parameter(torch.ones(n_modalities))
        self.bias = nn.Parameter(torch.zeros(3))
        self.register_buffer(
            "log_branch_prior", torch.full((n_modalities, 3), -torch.log(torch.tensor(3.0)).item())
        )
        self.register_buffer("log_prior", torch.full((3,), -torch.log(torch.tensor(3.0)).item()))

    def calibrated(self, logits: torch.Tensor) -> torch.Tensor:
        """[B, M, 3] raw logits → [B, M, 3] calibrated log-probabilities re-targeted to π."""
        t = torch.exp(self.log_temperature)[None, :, None]
        q = F.log_softmax(logits / t, dim=-1)
        return F.log_softmax(q - self.log_branch_prior + self.log_prior, dim=-1)

    def forward(self, logits: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """logits [B, M, 3] (any values where absent, NaN included), present bool [B, M] →
        (fused probabilities [B, 3], per-modality probabilities [B, M, 3])."""
        q = self.calibrated(logits)
        pres = present[:, :, None]
        log_prior = self.log_prior[None, None, :].expand_as(q)
        q = torch.where(pres, q, log_prior)
        contrib = torch.where(pres, self.weight[None, :, None] * (q - log_prior), torch.zeros_like(q))
        any_present = present.any(dim=1, keepdim=True)
        fused = (
            self.log_prior[None, :]
            + contrib.sum(1)
            + torch.where(
                any_present,
                self.bias[None, :].expand(present.shape[0], 3),
                torch.zeros_like(self.bias)[None, :],
            )
        )
        return torch.softmax(fused, dim=-1), torch.exp(q)


def text_only_log_probs(fusion: Fusion, text_logits: np.ndarray) -> np.ndarray:
    """What the service answers for a text-only request, from the text branch's raw logits float32 [N, 3]:
    the fused log-probabilities float32 [N, 3] with only the text expert (branch 0) present, i.e. after
    its temperature, the prior shift from its training prior to π and (learned fusion) its weight and bias.
    The held-out text metrics score this decision, not the head's raw argmax: with the uniform π the two
    differ (e.g. TweetEval test macro-F1 0.675 served vs 0.683 raw for the model of docs/model.md's recipe E).
    """
    n, m = len(text_logits), fusion.log_branch_prior.shape[0]
    logits = torch.zeros(n, m, 3)
    logits[:, 0] = torch.from_numpy(np.asarray(text_logits, dtype=np.float32))
    present = torch.zeros(n, m, dtype=torch.bool)
    present[:, 0] = True
    with torch.no_grad():
        fused, _ = fusion(logits, present)
    out: np.ndarray = torch.log(fused.clamp_min(1e-12)).numpy()
    return out


class FusedSentiment(nn.Module):
    """The exported model; input and output names follow ``app.contract``."""

    def __init__(
        self, text: TextClassifier, face: FaceClassifier, audio: AudioClassifier, fusion: Fusion
    ) -> None:
        super().__init__()
        self.text = text
        self.face = face
        self.audio = audio
        self.fusion = fusion

    @staticmethod
    def present_mask(modality_mask: torch.Tensor) -> torch.Tensor:
        """bool [B, M]: modality present where the mask is finite and > 0.5."""
        return torch.isfinite(modality_mask) & (modality_mask > 0.5)

    def branch_logits(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        face: torch.Tensor,
        audio_features: torch.Tensor,
        audio_mask: torch.Tensor,
        present: torch.Tensor,
    ) -> torch.Tensor:
        """Raw branch outputs [B, 3, 3] (text logits, face and audio log-probabilities); absent inputs are
        replaced by safe zeros first."""
        pt, pi, pa = present[:, 0], present[:, 1], present[:, 2]
        ids = torch.where(pt[:, None], input_ids, torch.zeros_like(input_ids)).clamp(0, VOCAB - 1)
        am = torch.where(pt[:, None], attention_mask, torch.ones_like(attention_mask)) > 0
        face = torch.where(pi[:, None, None, None] & torch.isfinite(face), face, torch.zeros_like(face))
        pa_rows = pa.reshape(-1, *([1] * (audio_features.dim() - 1)))  # log-mel [B, T, M] or waveform [B, N]
        af = torch.where(
            pa_rows & torch.isfinite(audio_features),
            audio_features,
            torch.zeros_like(audio_features),
        )
        amask = torch.where(
            pa[:, None] & torch.isfinite(audio_mask) & (audio_mask > 0.5),
            torch.ones_like(audio_mask),
            torch.zeros_like(audio_mask),
        )
        zt = self.text(ids, am.to(torch.int64))
        zi = self.face.forward_present(face, pi)
        za = self.audio.forward_present(af, amask, pa)
        return torch.stack([zt, zi, za], dim=1)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        face: torch.Tensor,
        audio_features: torch.Tensor,
        audio_mask: torch.Tensor,
        modality_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        present = self.present_mask(modality_mask)
        logits = self.branch_logits(input_ids, attention_mask, face, audio_features, audio_mask, present)
        out: tuple[torch.Tensor, torch.Tensor] = self.fusion(logits, present)
        return out
