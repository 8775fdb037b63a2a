//! The STUN wire format we need: one RFC 5389 Binding request out, the
//! mapped address out of its success response. Encoding and decoding are
//! `stun_codec`'s; this file only decides what to accept.

use std::net::SocketAddr;

use bytecodec::{DecodeExt, EncodeExt};
use stun_codec::rfc5389::attributes::{MappedAddress, XorMappedAddress};
use stun_codec::rfc5389::{Attribute, methods::BINDING};
use stun_codec::{Message, MessageClass, MessageDecoder, MessageEncoder, TransactionId};

/// A STUN transaction ID (96 bits).
pub(super) type TxId = [u8; 12];

/// A fresh transaction ID, from the OS's randomness (RFC 5389 wants it
/// random so that an off-path host cannot forge the answer); `None` when
/// the OS has none to give (the target is then skipped).
pub(super) fn new_transaction_id() -> Option<TxId> {
    let mut id = [0u8; 12];
    rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, &mut id).ok()?;
    Some(id)
}

/// The bytes of a Binding request with transaction ID `id`; `None` only if
/// the encoder refuses, which an attribute-less request never makes it do.
pub(super) fn binding_request(id: TxId) -> Option<Vec<u8>> {
    let request: Message<Attribute> =
        Message::new(MessageClass::Request, BINDING, TransactionId::new(id));
    MessageEncoder::new().encode_into_bytes(request).ok()
}

/// The mapped address in `datagram` when it is a Binding success response
/// to transaction `id`; `None` for anything else (garbage, an error
/// response, a reply to another request).
///
/// XOR-MAPPED-ADDRESS is preferred; plain MAPPED-ADDRESS is accepted for
/// old RFC 3489 servers. IPv4-mapped IPv6 addresses are turned into IPv4.
pub(super) fn mapped_address(datagram: &[u8], id: TxId) -> Option<SocketAddr> {
    let message = MessageDecoder::<Attribute>::new()
        .decode_from_bytes(datagram)
        .ok()?
        .ok()?;
    let is_ours = message.class() == MessageClass::SuccessResponse
        && message.method() == BINDING
        && message.transaction_id().as_bytes() == &id;
    if !is_ours {
        return None;
    }
    let address = message
        .get_attribute::<XorMappedAddress>()
        .map(XorMappedAddress::address)
        .or_else(|| {
            message
                .get_attribute::<MappedAddress>()
                .map(MappedAddress::address)
        })?;
    Some(canonical(address))
}

/// `addr` with an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) turned into
/// plain IPv4, so that addresses compare equal whatever socket saw them.
pub(super) fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// A Binding success response carrying `mapped` as XOR-MAPPED-ADDRESS:
/// what a STUN server sends back. Only the tests' fake server needs it.
#[cfg(test)]
pub(super) fn binding_response(id: TxId, mapped: SocketAddr) -> Option<Vec<u8>> {
    let mut response: Message<Attribute> = Message::new(
        MessageClass::SuccessResponse,
        BINDING,
        TransactionId::new(id),
    );
    response.add_attribute(XorMappedAddress::new(mapped));
    MessageEncoder::new().encode_into_bytes(response).ok()
}

/// The transaction ID of a Binding request, for the tests' fake server.
#[cfg(test)]
pub(super) fn request_id(datagram: &[u8]) -> Option<TxId> {
    let message = MessageDecoder::<Attribute>::new()
        .decode_from_bytes(datagram)
        .ok()?
        .ok()?;
    let is_request = message.class() == MessageClass::Request && message.method() == BINDING;
    is_request.then(|| *message.transaction_id().as_bytes())
}
