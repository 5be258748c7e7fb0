"""The Python SDK: `Croupier` (sync) and `AsyncCroupier` (asyncio), on httpx.

```python
from croupier.client import Croupier

with Croupier("http://127.0.0.1:8000", api_key) as croupier:
    d = croupier.decide("greeting", unit_id="user-42", default_arm="short")
    ...                                   # use d.arm / d.config
    croupier.reward(d.decision_id, 1.0)   # queued, sent in the background
```

`decide()` never raises into the caller (it returns the default arm with reason "fallback");
`reward()` never blocks. See docs/sdk.md. This package imports nothing of the server.
"""

from croupier.client._async import AsyncCroupier
from croupier.client._core import CroupierError, Decision, RewardStats
from croupier.client._sync import Croupier

__all__ = ["AsyncCroupier", "Croupier", "CroupierError", "Decision", "RewardStats"]
