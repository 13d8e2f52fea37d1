"""The kernel-cache policy stays bounded and never keeps a changed file's pages."""

from archfs.mount.kernelcache import KernelCachePolicy


def test_changed_paths_are_never_kept_however_many_are_written():
    policy = KernelCachePolicy(limit=4)
    paths = ["/f%d" % i for i in range(50)]
    for path in paths:
        policy.opened(path)             # cached once...
    for path in paths:
        policy.changed(path)            # ... then written: more than the limit
    assert len(policy._changed) <= 4
    assert all(policy.opened(path) is False for path in paths)
    # and an unchanged second open keeps the pages again
    assert policy.opened(paths[-1]) is True


def test_opens_after_a_rename_stay_bounded_and_safe():
    policy = KernelCachePolicy(limit=4)
    policy.renamed()
    first = [policy.opened("/g%d" % i) for i in range(20)]
    assert first == [False] * 20        # every path is stale after a rename
    assert len(policy._since_rename) <= 4
    assert policy.opened("/g19") is True    # still remembered: opened since
    assert policy.opened("/g0") is False    # forgotten: dropped again (safe)
    assert policy.opened("/g0") is True
