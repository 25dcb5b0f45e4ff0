from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Version(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERSION_NONE: _ClassVar[Version]
    VERSION_CURRENT: _ClassVar[Version]

class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KIND_HELLO: _ClassVar[Kind]
    KIND_OPEN: _ClassVar[Kind]
    KIND_CLOSE: _ClassVar[Kind]
    KIND_REQUEST: _ClassVar[Kind]
    KIND_COUNTERS: _ClassVar[Kind]
    KIND_DEFINE: _ClassVar[Kind]
    KIND_PUSH: _ClassVar[Kind]
    KIND_ANSWER: _ClassVar[Kind]
    KIND_DROP: _ClassVar[Kind]

class Change(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANGE_REGISTER: _ClassVar[Change]
    CHANGE_UNREGISTER: _ClassVar[Change]
VERSION_NONE: Version
VERSION_CURRENT: Version
KIND_HELLO: Kind
KIND_OPEN: Kind
KIND_CLOSE: Kind
KIND_REQUEST: Kind
KIND_COUNTERS: Kind
KIND_DEFINE: Kind
KIND_PUSH: Kind
KIND_ANSWER: Kind
KIND_DROP: Kind
CHANGE_REGISTER: Change
CHANGE_UNREGISTER: Change

class Hello(_message.Message):
    __slots__ = ("version", "release")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    version: int
    release: str
    def __init__(self, version: _Optional[int] = ..., release: _Optional[str] = ...) -> None: ...

class Peer(_message.Message):
    __slots__ = ("id", "key", "addrs", "signed_peer_record")
    ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    ADDRS_FIELD_NUMBER: _ClassVar[int]
    SIGNED_PEER_RECORD_FIELD_NUMBER: _ClassVar[int]
    id: str
    key: bytes
    addrs: _containers.RepeatedScalarFieldContainer[bytes]
    signed_peer_record: bytes
    def __init__(self, id: _Optional[str] = ..., key: _Optional[bytes] = ..., addrs: _Optional[_Iterable[bytes]] = ..., signed_peer_record: _Optional[bytes] = ...) -> None: ...

class Registration(_message.Message):
    __slots__ = ("namespace", "peer", "expires", "seq", "wire")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    WIRE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    peer: Peer
    expires: float
    seq: int
    wire: bytes
    def __init__(self, namespace: _Optional[str] = ..., peer: _Optional[_Union[Peer, _Mapping]] = ..., expires: _Optional[float] = ..., seq: _Optional[int] = ..., wire: _Optional[bytes] = ...) -> None: ...

class Refusal(_message.Message):
    __slots__ = ("status", "text")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    status: int
    text: str
    def __init__(self, status: _Optional[int] = ..., text: _Optional[str] = ...) -> None: ...

class Open(_message.Message):
    __slots__ = ("sid", "identity")
    SID_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    sid: int
    identity: bytes
    def __init__(self, sid: _Optional[int] = ..., identity: _Optional[bytes] = ...) -> None: ...

class Close(_message.Message):
    __slots__ = ("sid",)
    SID_FIELD_NUMBER: _ClassVar[int]
    sid: int
    def __init__(self, sid: _Optional[int] = ...) -> None: ...

class Request(_message.Message):
    __slots__ = ("sid", "request_id", "register", "unregister", "subscribe", "discover", "register_ttl", "discover_since")
    class Register(_message.Message):
        __slots__ = ("namespace", "peer")
        NAMESPACE_FIELD_NUMBER: _ClassVar[int]
        PEER_FIELD_NUMBER: _ClassVar[int]
        namespace: str
        peer: Peer
        def __init__(self, namespace: _Optional[str] = ..., peer: _Optional[_Union[Peer, _Mapping]] = ...) -> None: ...
    class Unregister(_message.Message):
        __slots__ = ("namespace", "key")
        NAMESPACE_FIELD_NUMBER: _ClassVar[int]
        KEY_FIELD_NUMBER: _ClassVar[int]
        namespace: str
        key: bytes
        def __init__(self, namespace: _Optional[str] = ..., key: _Optional[bytes] = ...) -> None: ...
    class Subscribe(_message.Message):
        __slots__ = ("namespace",)
        NAMESPACE_FIELD_NUMBER: _ClassVar[int]
        namespace: str
        def __init__(self, namespace: _Optional[str] = ...) -> None: ...
    class Discover(_message.Message):
        __slots__ = ("namespace", "limit")
        NAMESPACE_FIELD_NUMBER: _ClassVar[int]
        LIMIT_FIELD_NUMBER: _ClassVar[int]
        namespace: str
        limit: int
        def __init__(self, namespace: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...
    class RegisterTtl(_message.Message):
        __slots__ = ("namespace", "peer", "ttl")
        NAMESPACE_FIELD_NUMBER: _ClassVar[int]
        PEER_FIELD_NUMBER: _ClassVar[int]
        TTL_FIELD_NUMBER: _ClassVar[int]
        namespace: str
        peer: Peer
        ttl: int
        def __init__(self, namespace: _Optional[str] = ..., peer: _Optional[_Union[Peer, _Mapping]] = ..., ttl: _Optional[int] = ...) -> None: ...
    class DiscoverSince(_message.Message):
        __slots__ = ("namespace", "after", "limit", "signed_only")
        NAMESPACE_FIELD_NUMBER: _ClassVar[int]
        AFTER_FIELD_NUMBER: _ClassVar[int]
        LIMIT_FIELD_NUMBER: _ClassVar[int]
        SIGNED_ONLY_FIELD_NUMBER: _ClassVar[int]
        namespace: str
        after: int
        limit: int
        signed_only: bool
        def __init__(self, namespace: _Optional[str] = ..., after: _Optional[int] = ..., limit: _Optional[int] = ..., signed_only: _Optional[bool] = ...) -> None: ...
    SID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REGISTER_FIELD_NUMBER: _ClassVar[int]
    UNREGISTER_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    DISCOVER_FIELD_NUMBER: _ClassVar[int]
    REGISTER_TTL_FIELD_NUMBER: _ClassVar[int]
    DISCOVER_SINCE_FIELD_NUMBER: _ClassVar[int]
    sid: int
    request_id: int
    register: Request.Register
    unregister: Request.Unregister
    subscribe: Request.Subscribe
    discover: Request.Discover
    register_ttl: Request.RegisterTtl
    discover_since: Request.DiscoverSince
    def __init__(self, sid: _Optional[int] = ..., request_id: _Optional[int] = ..., register: _Optional[_Union[Request.Register, _Mapping]] = ..., unregister: _Optional[_Union[Request.Unregister, _Mapping]] = ..., subscribe: _Optional[_Union[Request.Subscribe, _Mapping]] = ..., discover: _Optional[_Union[Request.Discover, _Mapping]] = ..., register_ttl: _Optional[_Union[Request.RegisterTtl, _Mapping]] = ..., discover_since: _Optional[_Union[Request.DiscoverSince, _Mapping]] = ...) -> None: ...

class Counters(_message.Message):
    __slots__ = ("received", "sent", "refusals", "slow_subscribers_dropped", "sessions_opened")
    class ReceivedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class SentEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class RefusalsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    SENT_FIELD_NUMBER: _ClassVar[int]
    REFUSALS_FIELD_NUMBER: _ClassVar[int]
    SLOW_SUBSCRIBERS_DROPPED_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_OPENED_FIELD_NUMBER: _ClassVar[int]
    received: _containers.ScalarMap[str, int]
    sent: _containers.ScalarMap[str, int]
    refusals: _containers.ScalarMap[str, int]
    slow_subscribers_dropped: int
    sessions_opened: int
    def __init__(self, received: _Optional[_Mapping[str, int]] = ..., sent: _Optional[_Mapping[str, int]] = ..., refusals: _Optional[_Mapping[str, int]] = ..., slow_subscribers_dropped: _Optional[int] = ..., sessions_opened: _Optional[int] = ...) -> None: ...

class Define(_message.Message):
    __slots__ = ("change", "registration", "encoded")
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    REGISTRATION_FIELD_NUMBER: _ClassVar[int]
    ENCODED_FIELD_NUMBER: _ClassVar[int]
    change: Change
    registration: Registration
    encoded: bytes
    def __init__(self, change: _Optional[_Union[Change, str]] = ..., registration: _Optional[_Union[Registration, _Mapping]] = ..., encoded: _Optional[bytes] = ...) -> None: ...

class Push(_message.Message):
    __slots__ = ("sids",)
    SIDS_FIELD_NUMBER: _ClassVar[int]
    sids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, sids: _Optional[_Iterable[int]] = ...) -> None: ...

class Answer(_message.Message):
    __slots__ = ("sid", "request_id", "snapshot", "discovered", "refused", "registered")
    class Registrations(_message.Message):
        __slots__ = ("namespace", "registrations")
        NAMESPACE_FIELD_NUMBER: _ClassVar[int]
        REGISTRATIONS_FIELD_NUMBER: _ClassVar[int]
        namespace: str
        registrations: _containers.RepeatedCompositeFieldContainer[Registration]
        def __init__(self, namespace: _Optional[str] = ..., registrations: _Optional[_Iterable[_Union[Registration, _Mapping]]] = ...) -> None: ...
    SID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    DISCOVERED_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    sid: int
    request_id: int
    snapshot: Answer.Registrations
    discovered: Answer.Registrations
    refused: Refusal
    registered: Registration
    def __init__(self, sid: _Optional[int] = ..., request_id: _Optional[int] = ..., snapshot: _Optional[_Union[Answer.Registrations, _Mapping]] = ..., discovered: _Optional[_Union[Answer.Registrations, _Mapping]] = ..., refused: _Optional[_Union[Refusal, _Mapping]] = ..., registered: _Optional[_Union[Registration, _Mapping]] = ...) -> None: ...

class Drop(_message.Message):
    __slots__ = ("sid", "refusal")
    SID_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    sid: int
    refusal: Refusal
    def __init__(self, sid: _Optional[int] = ..., refusal: _Optional[_Union[Refusal, _Mapping]] = ...) -> None: ...
