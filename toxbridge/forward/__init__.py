"""Port forwarding, sans-IO (docs/forwarding.md): the specs of ``-L``, ``-W`` and
``--expose`` (``spec``), who may reach what (``rules``), and the forward stream's open
header and answer (``wire``). Pure: no sockets, no clock, no logging; it imports only
``toxbridge.errors`` and the stdlib. The trio shells are in ``toxbridge.forwarding``.
"""

from .rules import Refusal, Rules, parse_rules
from .spec import (Destination, LocalForward, StdioForward, parse_destination,
                   parse_local_forward, parse_stdio_forward)
from .wire import (FORWARD_KIND, Answer, Status, decode_header, encode_answer, encode_header,
                   parse_answer)

__all__ = [
    "Answer",
    "Destination",
    "FORWARD_KIND",
    "LocalForward",
    "Refusal",
    "Rules",
    "Status",
    "StdioForward",
    "decode_header",
    "encode_answer",
    "encode_header",
    "parse_answer",
    "parse_destination",
    "parse_local_forward",
    "parse_rules",
    "parse_stdio_forward",
]
