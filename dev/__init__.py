"""Everything that only serves development and tests: the run command (`dev.server`), the TikTok sandbox
(`dev.sandbox`), the embedded Postgres and the OpenAPI writer.

The production image ships `app/` alone, and nothing in `app/` imports from here (an import-linter contract).
"""
