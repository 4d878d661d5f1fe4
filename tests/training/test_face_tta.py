"""The face branch's test-time views (``face_model.tta_views``): what each view is, and that the classifier
(and so the exported graph) averages the emotion logits of exactly those views."""

from __future__ import annotations

import torch

from app.training.face_model import N_TTA_VIEWS, TTA_SHIFT, MiniXception, tta_mean, tta_views
from app.training.fusion import FaceClassifier


def _faces(b: int) -> torch.Tensor:
    return torch.rand(b, 1, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_views_are_the_face_its_mirror_and_their_edge_replicated_shifts() -> None:
    x = _faces(3)
    v = tta_views(x).reshape(N_TTA_VIEWS, 3, 1, 64, 64)
    s = TTA_SHIFT
    mirror = torch.flip(x, dims=[3])
    torch.testing.assert_close(v[0], x, rtol=0, atol=0)
    torch.testing.assert_close(v[5], mirror, rtol=0, atol=0)
    # view 1: content moved right by s, left border replicates column 0
    torch.testing.assert_close(v[1][..., s:], x[..., :-s], rtol=0, atol=0)
    torch.testing.assert_close(v[1][..., :s], x[..., :1].expand(-1, -1, -1, s), rtol=0, atol=0)
    # view 2: moved left; view 3: moved down; view 4: moved up
    torch.testing.assert_close(v[2][..., :-s], x[..., s:], rtol=0, atol=0)
    torch.testing.assert_close(v[3][..., s:, :], x[..., :-s, :], rtol=0, atol=0)
    torch.testing.assert_close(v[4][..., :-s, :], x[..., s:, :], rtol=0, atol=0)
    torch.testing.assert_close(v[6][..., s:], mirror[..., :-s], rtol=0, atol=0)


def test_classifier_averages_the_logits_of_each_view_and_batch_rows_stay_independent() -> None:
    torch.manual_seed(0)
    net = MiniXception().eval()
    mapping = torch.zeros(3, 7)
    mapping[0, [0, 1, 2, 4]] = 1
    mapping[1, 6] = 1
    mapping[2, [3, 5]] = 1
    clf = FaceClassifier(net, mapping, tta=True).eval()
    x = _faces(4)
    with torch.no_grad():
        z = clf.emotion_logits(x)
        by_view = torch.stack([net(tta_views(x[i : i + 1])).mean(0) for i in range(4)])
        torch.testing.assert_close(z, by_view, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(z, net(x), atol=1e-3)  # the views matter
        torch.testing.assert_close(tta_mean(tta_views(x), 4), tta_views(x).reshape(10, 4, 1, 64, 64).mean(0))
        # the cached-feature path used by learned fusion gives the same log-probabilities
        torch.testing.assert_close(clf.from_features(clf.view_features(x)), clf(x), rtol=1e-5, atol=1e-5)
