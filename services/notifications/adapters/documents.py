"""Invoice documents from invoicing's ``GetInvoiceDocument`` (PDF, and UBL as the e-invoice)."""

from __future__ import annotations

import grpc

from reckon.invoicing.v1 import invoicing_pb2 as inv_pb
from reckon.invoicing.v1 import invoicing_pb2_grpc
from services.common.grpc_client import open_channel
from services.notifications.service_layer.ports import (
    Attachment,
    PermanentFailure,
    TemporaryFailure,
)

_FORMATS = {
    "invoice_pdf": inv_pb.DOCUMENT_FORMAT_PDF,
    "einvoice_xml": inv_pb.DOCUMENT_FORMAT_UBL,
}
_FALLBACK_NAMES = {
    "invoice_pdf": ("pdf", "application/pdf"),
    "einvoice_xml": ("xml", "application/xml"),
}


class GrpcInvoiceDocuments:
    def __init__(self, address: str, token: str, *, timeout: float = 30.0) -> None:
        self._channel = open_channel(address, token)
        self._stub = invoicing_pb2_grpc.InvoicingServiceStub(self._channel)
        self._timeout = timeout

    async def fetch(self, invoice_id: str, kind: str) -> Attachment:
        if not invoice_id:
            raise PermanentFailure(f"{kind}: the event names no invoice_id")
        try:
            reply = await self._stub.GetInvoiceDocument(
                inv_pb.GetInvoiceDocumentRequest(invoice_id=invoice_id, format=_FORMATS[kind]),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise PermanentFailure(f"invoicing: {exc.details()}") from exc
            raise TemporaryFailure(f"invoicing unavailable: {exc.code().name}") from exc
        extension, media_type = _FALLBACK_NAMES[kind]
        return Attachment(
            file_name=reply.file_name or f"{invoice_id}.{extension}",
            media_type=reply.media_type or media_type,
            content=reply.content,
        )

    async def aclose(self) -> None:
        await self._channel.close()
