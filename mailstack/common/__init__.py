"""Mail-specific shared code (Postfix ``src/global``); imports only :mod:`mailstack.util`."""
