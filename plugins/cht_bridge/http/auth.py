"""An auth setting plus a Connection's login and secret become a session: the one auth builder.

Every kind adds its credential to a request only when the request goes to the Connection's
origin (``cht_bridge.http.origin``). Two kinds hold a credential that expires and is renewed:

* ``cookie``: the login and password go once, as HTTP Basic, to ``login_path`` on the
  Connection's origin; the session cookie that comes back is sent from then on (OpenMRS:
  ``GET /openmrs/ws/rest/v1/session`` returns ``JSESSIONID``, and answers 200 with
  ``"authenticated": false`` to a wrong password);
* ``oauth2``: client credentials go to ``token_url`` (it may be another origin: the client
  secret goes only there), and the token that comes back goes only to the Connection's origin,
  cached until shortly before ``expires_in``.

A third, ``jwt``, is no pipeline file's choice (``http.settings.AUTH_TYPES`` leaves it out): it is how
``hooks.connection.airflow_api_session`` logs in to Airflow's own api-server (``JwtLoginAuth``).

A 401 answer to a request that carried such a credential renews it (a new login, a new token)
and sends the request once more; a second 401 is handed back, so the caller stops with an
``AuthError`` as for any refused credentials. A login or token request that is refused is an
``AuthError`` at once; one that meets a busy server (no answer, 408, 429, 5xx) is a
``requests.ConnectionError``, which the callers' retry loops already treat as retryable. Those
requests follow no redirects and are read within a deadline and a size cap, like every other.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.auth import AuthBase, HTTPBasicAuth

from cht_bridge.errors import AnswerLimitError, AuthError, UnusableConnection
from cht_bridge.http.origin import OriginAuth, origin
from cht_bridge.http.read import AnswerLimits, request_within
from cht_bridge.http.retry import classify
from cht_bridge.http.settings import AuthSetting

#: Login and token answers are a few hundred bytes.
LOGIN_LIMITS = AnswerLimits(deadline_s=30.0, max_bytes=1024 * 1024)
#: A token is dropped this long before the server says it expires, so a request does not carry
#: one that expires on the way (at most a tenth of its lifetime, for short-lived tokens).
EXPIRY_MARGIN_S = 30.0


class CredentialError(ValueError):
    """The Connection lacks what the auth setting needs; ``key`` is the setting's key at fault."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def build_auth(
    base_url: str,
    setting: AuthSetting,
    login: str | None,
    password: str | None,
    *,
    conn_id: str,
    system: str,
    timeout: float | tuple[float, float] = (10.0, 30.0),
    limits: AnswerLimits = LOGIN_LIMITS,
    verify: bool | str = True,
    clock: Callable[[], float] = time.monotonic,
) -> AuthBase | None:
    """The requests auth that presents a Connection's secrets as ``setting`` says; None for ``none``.

    :raises CredentialError: the Connection lacks a login or password the setting needs, or has
        no http(s) URL for its credentials to belong to.
    """
    kind = setting.type
    if kind == "none":
        return None
    if origin(base_url) is None:
        raise CredentialError("conn_id", f"connection '{conn_id}' needs an http(s) host for its credentials")
    if kind in ("basic", "cookie") and not login:
        raise CredentialError("auth", f"{kind} needs a login on connection '{conn_id}'")
    if kind in ("bearer", "header") and not password:
        raise CredentialError("auth", f"{kind} needs the secret as the password of connection '{conn_id}'")
    if kind == "oauth2" and not (login and password):
        raise CredentialError(
            "auth", f"oauth2 needs the client id as the login and the secret as the password of connection '{conn_id}'"
        )
    if kind == "jwt" and not (login and password):
        raise CredentialError("auth", f"jwt needs a login and a password on connection '{conn_id}'")
    if kind == "basic":
        return OriginAuth(base_url, basic=(login or "", password or ""))
    if kind == "bearer":
        return OriginAuth(base_url, headers={"Authorization": f"Bearer {password}"})
    if kind == "header":
        return OriginAuth(base_url, headers={setting.header or "Authorization": f"{setting.prefix}{password}"})
    asker = _Asker(conn_id, system, timeout, limits, verify)
    if kind == "cookie":
        # A path from the host's root (``/openmrs/ws/rest/v1/session``), as OpenMRS documents it,
        # even when the Connection names a deeper base (``…/openmrs/ws/fhir2/R4``).
        login_url = _login_url(base_url, setting.login_path or "")
        return SessionCookieAuth(base_url, login_url, setting.cookie, (login or "", password or ""), asker)
    if kind == "jwt":
        # A relative path (``auth/token``) stays under the Connection's base, as the API calls do (a proxy path).
        login_url = _login_url(base_url, setting.login_path or "")
        return JwtLoginAuth(base_url, login_url, (login or "", password or ""), asker)
    token_url = urljoin(base_url.rstrip("/") + "/", setting.token_url or "")
    return ClientCredentialsAuth(base_url, token_url, (login or "", password or ""), setting.scope, asker, clock)


def _login_url(base_url: str, login_path: str) -> str:
    """``login_path`` joined to the base: from the host's root when it starts with ``/``, under the base's
    path when relative. The login carries the password, so it may go to the Connection's origin only.

    :raises CredentialError: the path leads to another origin.
    """
    login_url = urljoin(base_url.rstrip("/") + "/", login_path)
    if origin(login_url) != origin(base_url):
        raise CredentialError("login_path", "must be a path on the connection's own host, not another origin")
    return login_url


class _Asker:
    """Sends the login or token request of one Connection: no redirects, a deadline, a size cap."""

    def __init__(
        self, conn_id: str, system: str, timeout: float | tuple[float, float], limits: AnswerLimits, verify: bool | str
    ) -> None:
        self.conn_id = conn_id
        self.system = system
        self.timeout = timeout
        self.limits = limits
        self.verify = verify
        self.requests = 0  # login or token requests sent, for tests and logs

    def ask(
        self,
        method: str,
        url: str,
        *,
        basic: tuple[str, str] | None = None,
        data: dict[str, str] | None = None,
        json: dict[str, str] | None = None,
    ) -> Any:
        """The JSON answer (None if not JSON) and the cookies of a 2xx answer. The credentials go as
        HTTP Basic (``basic``), or in the body (``json``: a JSON login such as Airflow's ``/auth/token``).

        :raises AuthError: the credentials were refused (401/403, or 400, which is how a token
            endpoint answers ``invalid_client``), or any other final refusal of the login.
        :raises requests.ConnectionError: no answer, or a busy server: the caller may try again.
        """
        self.requests += 1
        with requests.Session() as plain:  # the caller's session would call this auth again
            plain.verify = self.verify
            try:
                response = request_within(
                    plain, method, url, self.limits,
                    data=data, json=json, auth=HTTPBasicAuth(*basic) if basic else None,
                    headers={"Accept": "application/json"}, timeout=self.timeout,
                )  # fmt: skip
                kind = classify(response.status_code)
            except AnswerLimitError as exc:
                raise requests.ConnectionError(f"login answer: {exc}") from None
        if kind == "retryable":
            raise requests.ConnectionError(f"login answered HTTP {response.status_code}")
        if kind != "delivered":
            raise AuthError(self.conn_id, response.status_code, self.system)
        try:
            return response.json(), response.cookies
        except ValueError:
            return None, response.cookies


class _RenewingAuth(AuthBase):
    """A credential fetched on first use, sent only to the Connection's origin, renewed once on a 401."""

    header = "Authorization"

    def __init__(self, base_url: str, asker: _Asker) -> None:
        self.origin = origin(base_url)
        self.asker = asker
        self._value: str | None = None
        self._lock = threading.Lock()

    def _fetch(self) -> str:
        raise NotImplementedError

    def _current(self) -> str | None:
        return self._value

    def _valid(self, stale: str | None = None) -> str:
        """The credential to send; a new one when there is none, or when ``stale`` is still held."""
        with self._lock:
            value = self._current()
            if value is None or value == stale:
                value = self._value = self._fetch()
            return value

    def _format(self, value: str) -> str:
        raise NotImplementedError

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if origin(request.url or "") != self.origin:
            request.headers.pop(self.header, None)
            return request
        value = self._valid()
        request.headers[self.header] = self._format(value)
        request._credential = value  # type: ignore[attr-defined]  # which one a 401 refused
        request.register_hook("response", self._renew_on_401)
        return request

    def _renew_on_401(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        request = response.request
        if response.status_code != 401 or getattr(request, "_renewed", False):
            return response
        response.close()  # not read: its body is not needed, and the connection is not reused
        value = self._valid(stale=getattr(request, "_credential", None))
        again = request.copy()
        again._renewed = True  # type: ignore[attr-defined]  # a second 401 goes to the caller
        again.headers[self.header] = self._format(value)
        answer = response.connection.send(again, **kwargs)
        answer.history.append(response)
        answer.request = again
        return answer

    def __repr__(self) -> str:  # never the credential
        scheme, host, port = self.origin or ("?", "?", 0)
        return f"{type(self).__name__}({scheme}://{host}:{port})"


class SessionCookieAuth(_RenewingAuth):
    """A session cookie obtained by one login request (``auth: cookie``)."""

    header = "Cookie"

    def __init__(self, base_url: str, login_url: str, cookie: str, basic: tuple[str, str], asker: _Asker) -> None:
        super().__init__(base_url, asker)
        self.login_url = login_url
        self.cookie = cookie
        self._basic = basic

    def _fetch(self) -> str:
        answer, cookies = self.asker.ask("GET", self.login_url, basic=self._basic)
        if isinstance(answer, dict) and answer.get("authenticated") is False:
            raise AuthError(self.asker.conn_id, 401, self.asker.system)  # OpenMRS: 200, but not logged in
        value = cookies.get(self.cookie) or (answer.get("sessionId") if isinstance(answer, dict) else None)
        if not value:
            raise AuthError(self.asker.conn_id, 401, self.asker.system)
        return str(value)

    def _format(self, value: str) -> str:
        return f"{self.cookie}={value}"


class _BearerAuth(_RenewingAuth):
    """A token from a token endpoint or a login, sent as ``Authorization: Bearer <token>``."""

    @staticmethod
    def _token(answer: Any) -> str | None:
        """The answer's ``access_token``, None when it has none (or is not a JSON object)."""
        token = answer.get("access_token") if isinstance(answer, dict) else None
        return token if isinstance(token, str) and token else None

    def _format(self, value: str) -> str:
        return f"Bearer {value}"


class ClientCredentialsAuth(_BearerAuth):
    """An OAuth2 client-credentials token, cached until shortly before it expires (``auth: oauth2``)."""

    def __init__(
        self,
        base_url: str,
        token_url: str,
        client: tuple[str, str],
        scope: str | None,
        asker: _Asker,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(base_url, asker)
        self.token_url = token_url
        self.scope = scope
        self._client = client
        self._clock = clock
        self._expires: float | None = None

    def _current(self) -> str | None:
        if self._expires is not None and self._clock() >= self._expires:
            self._value = None
        return self._value

    def _fetch(self) -> str:
        data = {"grant_type": "client_credentials"}
        if self.scope:
            data["scope"] = self.scope
        answer, _ = self.asker.ask("POST", self.token_url, basic=self._client, data=data)
        token = self._token(answer)
        if token is None:
            raise requests.ConnectionError("the token endpoint answered without an access_token")
        lifetime = answer.get("expires_in")
        if isinstance(lifetime, (int, float)) and not isinstance(lifetime, bool) and lifetime > 0:
            self._expires = self._clock() + lifetime - min(EXPIRY_MARGIN_S, lifetime / 10)
        else:
            self._expires = None  # no lifetime given: kept until the resource answers 401
        return token


class JwtLoginAuth(_BearerAuth):
    """A bearer token (a JWT) from a JSON login: ``POST <login_url>`` with ``{"username", "password"}``
    answers ``{"access_token": ...}`` (Airflow's api-server, ``/auth/token`` of its SimpleAuthManager,
    201). The login goes only to ``login_url`` on the Connection's origin (``build_auth`` checks it), the
    token only to that origin; a 401 (an expired token) logs in once more.

    A 2xx login without a token is not a busy server (retrying meets the same page): it is a host that
    is not the API (its UI answers HTML), so it fails once, naming the Connection.
    """

    def __init__(self, base_url: str, login_url: str, user: tuple[str, str], asker: _Asker) -> None:
        super().__init__(base_url, asker)
        self.login_url = login_url
        self._user = user

    def _fetch(self) -> str:
        answer, _ = self.asker.ask("POST", self.login_url, json={"username": self._user[0], "password": self._user[1]})
        token = self._token(answer)
        if token is None:
            raise UnusableConnection(
                self.asker.conn_id,
                f"got no access_token from its login (POST {urlsplit(self.login_url).path} answered 2xx without "
                f"one): is the host {self.asker.system}?",
            )
        return token
