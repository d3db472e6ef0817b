"""The one error type the ingress turns into an HTTP answer (status + message)."""


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message
