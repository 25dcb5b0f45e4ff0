from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Message(_message.Message):
    __slots__ = ("type", "register", "unregister", "rendezvous", "discovery", "error", "request_id")
    class MessageType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        REGISTER: _ClassVar[Message.MessageType]
        UNREGISTER: _ClassVar[Message.MessageType]
        RENDEZVOUS: _ClassVar[Message.MessageType]
        DISCOVER: _ClassVar[Message.MessageType]
        ERROR: _ClassVar[Message.MessageType]
    REGISTER: Message.MessageType
    UNREGISTER: Message.MessageType
    RENDEZVOUS: Message.MessageType
    DISCOVER: Message.MessageType
    ERROR: Message.MessageType
    class Peer(_message.Message):
        __slots__ = ("id", "addrs", "signed_peer_record")
        ID_FIELD_NUMBER: _ClassVar[int]
        ADDRS_FIELD_NUMBER: _ClassVar[int]
        SIGNED_PEER_RECORD_FIELD_NUMBER: _ClassVar[int]
        id: str
        addrs: _containers.RepeatedScalarFieldContainer[bytes]
        signed_peer_record: bytes
        def __init__(self, id: _Optional[str] = ..., addrs: _Optional[_Iterable[bytes]] = ..., signed_peer_record: _Optional[bytes] = ...) -> None: ...
    class Register(_message.Message):
        __slots__ = ("ns", "peer")
        NS_FIELD_NUMBER: _ClassVar[int]
        PEER_FIELD_NUMBER: _ClassVar[int]
        ns: str
        peer: Message.Peer
        def __init__(self, ns: _Optional[str] = ..., peer: _Optional[_Union[Message.Peer, _Mapping]] = ...) -> None: ...
    class Unregister(_message.Message):
        __slots__ = ("ns", "peer")
        NS_FIELD_NUMBER: _ClassVar[int]
        PEER_FIELD_NUMBER: _ClassVar[int]
        ns: str
        peer: Message.Peer
        def __init__(self, ns: _Optional[str] = ..., peer: _Optional[_Union[Message.Peer, _Mapping]] = ...) -> None: ...
    class Rendezvous(_message.Message):
        __slots__ = ("ns",)
        NS_FIELD_NUMBER: _ClassVar[int]
        ns: str
        def __init__(self, ns: _Optional[str] = ...) -> None: ...
    class Discover(_message.Message):
        __slots__ = ("ns", "limit")
        NS_FIELD_NUMBER: _ClassVar[int]
        LIMIT_FIELD_NUMBER: _ClassVar[int]
        ns: str
        limit: int
        def __init__(self, ns: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...
    class Error(_message.Message):
        __slots__ = ("status", "text")
        STATUS_FIELD_NUMBER: _ClassVar[int]
        TEXT_FIELD_NUMBER: _ClassVar[int]
        status: int
        text: str
        def __init__(self, status: _Optional[int] = ..., text: _Optional[str] = ...) -> None: ...
    TYPE_FIELD_NUMBER: _ClassVar[int]
    REGISTER_FIELD_NUMBER: _ClassVar[int]
    UNREGISTER_FIELD_NUMBER: _ClassVar[int]
    RENDEZVOUS_FIELD_NUMBER: _ClassVar[int]
    DISCOVERY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    type: Message.MessageType
    register: _containers.RepeatedCompositeFieldContainer[Message.Register]
    unregister: _containers.RepeatedCompositeFieldContainer[Message.Unregister]
    rendezvous: _containers.RepeatedCompositeFieldContainer[Message.Rendezvous]
    discovery: _containers.RepeatedCompositeFieldContainer[Message.Discover]
    error: Message.Error
    request_id: int
    def __init__(self, type: _Optional[_Union[Message.MessageType, str]] = ..., register: _Optional[_Iterable[_Union[Message.Register, _Mapping]]] = ..., unregister: _Optional[_Iterable[_Union[Message.Unregister, _Mapping]]] = ..., rendezvous: _Optional[_Iterable[_Union[Message.Rendezvous, _Mapping]]] = ..., discovery: _Optional[_Iterable[_Union[Message.Discover, _Mapping]]] = ..., error: _Optional[_Union[Message.Error, _Mapping]] = ..., request_id: _Optional[int] = ...) -> None: ...
