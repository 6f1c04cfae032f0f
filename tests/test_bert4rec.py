"""BERT4Rec: the cloze mask, the loss terms it selects and the [M] read-out at prediction,
each against an explicit per-row construction of what RecBole 1.2.1 does."""
from __future__ import annotations

import pytest
import torch

from models import build_model

N_ITEMS = 30


def tiny(**over):
    torch.manual_seed(0)
    config = dict(hidden_size=8, num_heads=2, inner_size=16, max_len=10)
    config.update(over)
    return build_model("bert4rec", N_ITEMS, **config).double().eval()


def padded_batch(seq_len, length=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    seq_len = torch.tensor(seq_len)
    item_seq = torch.randint(1, N_ITEMS, (len(seq_len), length), generator=g)
    item_seq[torch.arange(length)[None, :] >= seq_len[:, None]] = 0
    return item_seq, seq_len


def test_mask_ratio_and_padding_is_never_masked():
    model = tiny(max_len=50)
    item_seq, seq_len = padded_batch([50] * 200 + [20] * 200, length=50)
    torch.manual_seed(0)
    masked_seq, at = model.cloze_mask(item_seq)
    chosen = masked_seq == model.mask_token
    real = item_seq != 0
    torch.manual_seed(0)                                    # the same draw, by hand:
    expected = (torch.rand(item_seq.shape) < 0.2) & real    # each real item with probability rho
    assert torch.equal(chosen, expected)
    assert not (chosen & ~real).any()                       # padding never masked
    assert torch.equal(masked_seq[~chosen], item_seq[~chosen])
    assert not (at & ~chosen).any()                        # loss terms only where [M] is shown


def test_loss_positions_follow_recboles_index_list():
    chosen = torch.tensor([[0, 1, 0, 1, 1, 0],
                           [1, 1, 0, 0, 0, 0],
                           [0, 0, 0, 0, 0, 1]], dtype=torch.bool)
    expected = torch.tensor([[0, 0, 0, 1, 1, 0],             # the last k = 2 of {1, 3, 4}
                             [0, 1, 0, 0, 0, 0],             # {0, 1}: index 0 never counts
                             [0, 0, 0, 0, 0, 1]], dtype=torch.bool)
    from models.bert4rec import BERT4Rec
    assert torch.equal(BERT4Rec.loss_positions(chosen, k=2), expected)


def test_loss_is_the_mean_ce_over_the_selected_positions_only():
    model = tiny()
    item_seq, seq_len = padded_batch([10, 7, 3, 10])
    torch.manual_seed(5)
    masked_seq, at = model.cloze_mask(item_seq)
    assert at.sum() >= 2
    with torch.no_grad():
        hidden = model(masked_seq, seq_len)
        terms = []
        for b, t in at.nonzero().tolist():
            logits = hidden[b, t] @ model.item_embedding.weight[:N_ITEMS].T + model.output_bias
            terms.append(-torch.log_softmax(logits, dim=0)[item_seq[b, t]])
        expected = torch.stack(terms).mean()
        torch.manual_seed(5)
        loss = model.calculate_loss(item_seq, seq_len, torch.tensor([1, 2, 3, 4]))
        torch.manual_seed(5)                                 # the prefix's target is unused
        same = model.calculate_loss(item_seq, seq_len, torch.tensor([9, 9, 9, 9]))
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)
    assert loss == same


def expected_scores(model, item_seq, seq_len, drop_first):
    """Per row: the items, then [M]; drop x_1 (always, or when the window is full)."""
    L = item_seq.size(1)
    E, bias = model.item_embedding.weight[:N_ITEMS], model.output_bias
    rows = []
    for items, n in zip(item_seq.tolist(), seq_len.tolist()):
        window = items[:n] + [model.mask_token]
        if drop_first or n == L:
            window = window[1:]
        at = len(window) - 1
        window = torch.tensor(window + [0] * (L - len(window)))[None]
        hidden = model(window, torch.tensor([n]))[0, at]
        rows.append(hidden @ E.T + bias)
    return torch.stack(rows)


@pytest.mark.parametrize("drop_first", [True, False])
def test_prediction_reads_the_appended_mask(drop_first):
    model = tiny(predict_drop_first=drop_first)
    with torch.no_grad():
        model.output_bias.normal_()                          # make the bias matter
    item_seq, seq_len = padded_batch([10, 6, 1, 9])
    with torch.no_grad():
        torch.testing.assert_close(model.full_sort_predict(item_seq, seq_len),
                                   expected_scores(model, item_seq, seq_len, drop_first),
                                   rtol=1e-10, atol=1e-12)


def test_encoder_is_bidirectional():
    model = tiny()
    item_seq, seq_len = padded_batch([10])
    changed = item_seq.clone()
    changed[0, -1] = item_seq[0, -1] % (N_ITEMS - 1) + 1
    with torch.no_grad():
        assert not torch.allclose(model(item_seq, seq_len)[0, 0], model(changed, seq_len)[0, 0])


def test_mask_token_is_never_scored():
    model = tiny()
    assert model.item_embedding.num_embeddings == N_ITEMS + 1
    assert model.mask_token == N_ITEMS
    item_seq, seq_len = padded_batch([4, 10])
    assert model.full_sort_predict(item_seq, seq_len).shape == (2, N_ITEMS)
