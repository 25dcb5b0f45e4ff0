from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Message(_message.Message):
    __slots__ = ("type", "register", "registerResponse", "unregister", "discover", "discoverResponse")
    class MessageType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        REGISTER: _ClassVar[Message.MessageType]
        REGISTER_RESPONSE: _ClassVar[Message.MessageType]
        UNREGISTER: _ClassVar[Message.MessageType]
        DISCOVER: _ClassVar[Message.MessageType]
        DISCOVER_RESPONSE: _ClassVar[Message.MessageType]
    REGISTER: Message.MessageType
    REGISTER_RESPONSE: Message.MessageType
    UNREGISTER: Message.MessageType
    DISCOVER: Message.MessageType
    DISCOVER_RESPONSE: Message.MessageType
    class ResponseStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OK: _ClassVar[Message.ResponseStatus]
        E_INVALID_NAMESPACE: _ClassVar[Message.ResponseStatus]
        E_INVALID_SIGNED_PEER_RECORD: _ClassVar[Message.ResponseStatus]
        E_INVALID_TTL: _ClassVar[Message.ResponseStatus]
        E_INVALID_COOKIE: _ClassVar[Message.ResponseStatus]
        E_NOT_AUTHORIZED: _ClassVar[Message.ResponseStatus]
        E_INTERNAL_ERROR: _ClassVar[Message.ResponseStatus]
        E_UNAVAILABLE: _ClassVar[Message.ResponseStatus]
    OK: Message.ResponseStatus
    E_INVALID_NAMESPACE: Message.ResponseStatus
    E_INVALID_SIGNED_PEER_RECORD: Message.ResponseStatus
    E_INVALID_TTL: Message.ResponseStatus
    E_INVALID_COOKIE: Message.ResponseStatus
    E_NOT_AUTHORIZED: Message.ResponseStatus
    E_INTERNAL_ERROR: Message.ResponseStatus
    E_UNAVAILABLE: Message.ResponseStatus
    class Register(_message.Message):
        __slots__ = ("ns", "signedPeerRecord", "ttl")
        NS_FIELD_NUMBER: _ClassVar[int]
        SIGNEDPEERRECORD_FIELD_NUMBER: _ClassVar[int]
        TTL_FIELD_NUMBER: _ClassVar[int]
        ns: str
        signedPeerRecord: bytes
        ttl: int
        def __init__(self, ns: _Optional[str] = ..., signedPeerRecord: _Optional[bytes] = ..., ttl: _Optional[int] = ...) -> None: ...
    class RegisterResponse(_message.Message):
        __slots__ = ("status", "statusText", "ttl")
        STATUS_FIELD_NUMBER: _ClassVar[int]
        STATUSTEXT_FIELD_NUMBER: _ClassVar[int]
        TTL_FIELD_NUMBER: _ClassVar[int]
        status: Message.ResponseStatus
        statusText: str
        ttl: int
        def __init__(self, status: _Optional[_Union[Message.ResponseStatus, str]] = ..., statusText: _Optional[str] = ..., ttl: _Optional[int] = ...) -> None: ...
    class Unregister(_message.Message):
        __slots__ = ("ns", "id")
        NS_FIELD_NUMBER: _ClassVar[int]
        ID_FIELD_NUMBER: _ClassVar[int]
        ns: str
        id: bytes
        def __init__(self, ns: _Optional[str] = ..., id: _Optional[bytes] = ...) -> None: ...
    class Discover(_message.Message):
        __slots__ = ("ns", "limit", "cookie")
        NS_FIELD_NUMBER: _ClassVar[int]
        LIMIT_FIELD_NUMBER: _ClassVar[int]
        COOKIE_FIELD_NUMBER: _ClassVar[int]
        ns: str
        limit: int
        cookie: bytes
        def __init__(self, ns: _Optional[str] = ..., limit: _Optional[int] = ..., cookie: _Optional[bytes] = ...) -> None: ...
    class DiscoverResponse(_message.Message):
        __slots__ = ("registrations", "cookie", "status", "statusText")
        REGISTRATIONS_FIELD_NUMBER: _ClassVar[int]
        COOKIE_FIELD_NUMBER: _ClassVar[int]
        STATUS_FIELD_NUMBER: _ClassVar[int]
        STATUSTEXT_FIELD_NUMBER: _ClassVar[int]
        registrations: _containers.RepeatedCompositeFieldContainer[Message.Register]
        cookie: bytes
        status: Message.ResponseStatus
        statusText: str
        def __init__(self, registrations: _Optional[_Iterable[_Union[Message.Register, _Mapping]]] = ..., cookie: _Optional[bytes] = ..., status: _Optional[_Union[Message.ResponseStatus, str]] = ..., statusText: _Optional[str] = ...) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    REGISTER_FIELD_NUMBER: _ClassVar[int]
    REGISTERRESPONSE_FIELD_NUMBER: _ClassVar[int]
    UNREGISTER_FIELD_NUMBER: _ClassVar[int]
    DISCOVER_FIELD_NUMBER: _ClassVar[int]
    DISCOVERRESPONSE_FIELD_NUMBER: _ClassVar[int]
    type: Message.MessageType
    register: Message.Register
    registerResponse: Message.RegisterResponse
    unregister: Message.Unregister
    discover: Message.Discover
    discoverResponse: Message.DiscoverResponse
    def __init__(self, type: _Optional[_Union[Message.MessageType, str]] = ..., register: _Optional[_Union[Message.Register, _Mapping]] = ..., registerResponse: _Optional[_Union[Message.RegisterResponse, _Mapping]] = ..., unregister: _Optional[_Union[Message.Unregister, _Mapping]] = ..., discover: _Optional[_Union[Message.Discover, _Mapping]] = ..., discoverResponse: _Optional[_Union[Message.DiscoverResponse, _Mapping]] = ...) -> None: ...
