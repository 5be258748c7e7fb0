"""The optimizer's cycle pauses Python's cyclic garbage collector and restores it after."""

from __future__ import annotations

import gc

import pytest

from croupier.optimizer.tick import _cyclic_gc_paused


@pytest.mark.parametrize("enabled", [True, False])
def test_the_collector_is_off_inside_and_as_it_was_after(enabled: bool) -> None:
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        with _cyclic_gc_paused():
            assert not gc.isenabled()
        assert gc.isenabled() is enabled
        with pytest.raises(RuntimeError), _cyclic_gc_paused():
            raise RuntimeError("a failed cycle")
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()
