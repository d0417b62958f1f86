from collections import Counter

from tunesmith.data.batch_order import epoch_batches
from tunesmith.data.splits import stratified_split


def test_stratified_split_keeps_label_shares_and_is_seeded():
    items = list(range(100))
    labels = ["a"] * 80 + ["b"] * 20
    rest, held, stratified = stratified_split(items, labels, 0.2, seed=1)
    assert stratified and len(held) == 20 and sorted(rest + held) == items
    assert Counter(labels[i] for i in held) == {"a": 16, "b": 4}
    assert stratified_split(items, labels, 0.2, seed=1)[1] == held
    assert stratified_split(items, labels, 0.2, seed=2)[1] != held


def test_split_falls_back_to_random_when_a_class_is_too_small():
    rest, held, stratified = stratified_split(list(range(10)), ["a"] * 9 + ["b"], 0.2, seed=0)
    assert not stratified and len(held) == 2 and len(rest) == 8


def test_each_example_once_per_epoch_and_order_is_a_function_of_seed_and_epoch():
    lengths = [(i * 37) % 50 + 1 for i in range(203)]
    for grouped in (True, False):
        batches = epoch_batches(lengths, 16, seed=3, epoch=0, group_by_length=grouped)
        assert sorted(i for b in batches for i in b) == list(range(203))
        assert batches == epoch_batches(lengths, 16, seed=3, epoch=0, group_by_length=grouped)
        assert batches != epoch_batches(lengths, 16, seed=3, epoch=1, group_by_length=grouped)


def test_length_grouping_cuts_padding():
    lengths = [(i * 37) % 120 + 4 for i in range(1600)]

    def padded(batches):
        return sum(max(lengths[i] for i in b) * len(b) for b in batches)

    grouped = padded(epoch_batches(lengths, 16, 0, 0, True))
    plain = padded(epoch_batches(lengths, 16, 0, 0, False))
    assert grouped < 0.7 * plain
    assert grouped < 1.1 * sum(lengths)
