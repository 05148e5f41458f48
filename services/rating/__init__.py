"""The rating service: catalog, tariff engine and usage import (RAT-1 to RAT-8)."""
