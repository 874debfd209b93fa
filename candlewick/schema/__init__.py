"""Schema: the models (attrs), the one cattrs converter, request decoding, SQL migrations."""

from candlewick.schema._batch import TickColumns
from candlewick.schema._decode import (MAX_ITEMS, SYMBOL_RE, converter, decode_symbols, decode_tick_columns, decode_ticks,
                                       parse_ts)
from candlewick.schema._digest import DIGEST_BYTES, digest_bytes, digest_key, digests_from_bytes, key_digest, key_digests
from candlewick.schema._models import Bar, Receipt, SymbolInfo, Tick

__all__ = ["DIGEST_BYTES", "MAX_ITEMS", "SYMBOL_RE", "Bar", "Receipt", "SymbolInfo", "Tick", "TickColumns", "converter",
           "decode_symbols", "decode_tick_columns", "decode_ticks", "digest_bytes", "digest_key", "digests_from_bytes",
           "key_digest", "key_digests", "parse_ts"]
