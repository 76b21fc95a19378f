"""Generic helpers with no mail knowledge (Postfix ``src/util``); imports nothing else of mailstack."""
