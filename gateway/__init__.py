"""The HTTP/JSON edge of Reckon: API, self-care pages, reports (see README.md)."""
