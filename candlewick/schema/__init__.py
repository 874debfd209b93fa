"""Schema: the models (attrs), the one cattrs converter, request decoding, SQL migrations."""

from candlewick.schema._decode import SYMBOL_RE, converter, decode_symbols, decode_ticks, parse_ts
from candlewick.schema._models import Bar, Receipt, SymbolInfo, Tick

__all__ = ["SYMBOL_RE", "Bar", "Receipt", "SymbolInfo", "Tick", "converter", "decode_symbols", "decode_ticks", "parse_ts"]
