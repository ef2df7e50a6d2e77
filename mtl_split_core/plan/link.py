"""A network link model: bandwidth, round-trip time, packet loss.

Transfer time of a message of B bytes (MTU-sized packets, selective retransmission):
serialization B * 8 / bandwidth inflated by the expected transmissions per packet 1 / (1 - p),
plus half an RTT of propagation, plus one extra RTT whenever at least one packet of the
message is lost (probability 1 - (1 - p)^packets) — the time to notice and resend.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from mtl_split_core.errors import InputError

MTU_PAYLOAD = 1400  # bytes of payload per packet after IP/UDP/RTPS headers

_UNITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"  # 20, 2.5, .5 (float() would also take "nan", "1e3")


@dataclass(frozen=True)
class Link:
    bandwidth_bps: float
    rtt_ms: float = 0.0
    loss: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Link:
        """'20mbit,10ms[,1%]' -> Link; InputError says what is wrong with ``text``."""
        parts = [p.strip().lower() for p in text.split(",") if p.strip()]
        if not parts or len(parts) > 3:
            raise InputError(f"link {text!r}: expected BANDWIDTH[,RTT][,LOSS] like 20mbit,10ms,1%")
        m = re.fullmatch(_NUMBER + r"\s*(bit|kbit|mbit|gbit)", parts[0])
        if not m:
            raise InputError(f"link bandwidth {parts[0]!r}: expected e.g. 20mbit, 500kbit")
        bw = float(m.group(1)) * _UNITS[m.group(2)]
        rtt, loss = 0.0, 0.0
        for p in parts[1:]:
            number = re.fullmatch(_NUMBER + r"\s*(ms|%)", p)
            if number and number.group(2) == "ms":
                rtt = float(number.group(1))
            elif number:
                loss = float(number.group(1)) / 100
            else:
                raise InputError(f"link field {p!r}: expected an RTT like 10ms or a loss like 1%")
        if bw <= 0 or rtt < 0 or not 0 <= loss < 1:
            raise InputError(f"link {text!r}: need bandwidth > 0, RTT >= 0, 0 <= loss < 100%")
        return cls(bw, rtt, loss)

    def serialization_ms(self, nbytes: float) -> float:
        """Time to put ``nbytes`` on the wire, resent packets included."""
        return nbytes * 8 / self.bandwidth_bps * 1e3 / (1 - self.loss)

    def transfer_ms(self, nbytes: float) -> float:
        """Send to receive of a message of ``nbytes`` (see the module's formula)."""
        packets = max(1, math.ceil(nbytes / MTU_PAYLOAD))
        p_any_lost = 1 - (1 - self.loss) ** packets
        return self.serialization_ms(nbytes) + self.rtt_ms / 2 + p_any_lost * self.rtt_ms

    def __str__(self) -> str:
        return f"{self.bandwidth_bps / 1e6:g} Mbit/s, {self.rtt_ms:g} ms RTT, {self.loss:.1%} loss"
