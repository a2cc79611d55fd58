//! What kind of address an IP address is, for deciding whether a tenant's URL may reach it.
//!
//! Pure functions: no lookups, no connections.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not public.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Loopback,
    /// RFC 1918 (10/8, 172.16/12, 192.168/16).
    Private,
    /// Carrier-grade NAT, RFC 6598 (100.64/10).
    SharedNat,
    /// 169.254/16, fe80::/10.
    LinkLocal,
    /// Cloud instance metadata (169.254.169.254, fd00:ec2::254; Alibaba 100.100.100.200,
    /// Oracle's 192.0.0.192).
    Metadata,
    /// fc00::/7.
    UniqueLocal,
    /// fec0::/10 (deprecated site-local).
    SiteLocal,
    Multicast,
    /// 0.0.0.0/8, `::`.
    Unspecified,
    Broadcast,
    /// 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20.
    Documentation,
    /// 198.18/15, 2001:2::/48.
    Benchmarking,
    /// IETF protocol assignments and reserved space (192.0.0/24, 240/4, 2001::/23, IPv6 outside
    /// 2000::/3, Teredo, deprecated IPv4-compatible addresses, local-use NAT64).
    Reserved,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Loopback => "loopback",
            Kind::Private => "private",
            Kind::SharedNat => "shared (carrier-grade NAT)",
            Kind::LinkLocal => "link-local",
            Kind::Metadata => "cloud metadata",
            Kind::UniqueLocal => "unique-local",
            Kind::SiteLocal => "site-local",
            Kind::Multicast => "multicast",
            Kind::Unspecified => "unspecified",
            Kind::Broadcast => "broadcast",
            Kind::Documentation => "documentation",
            Kind::Benchmarking => "benchmarking",
            Kind::Reserved => "reserved",
        })
    }
}

/// The class of an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// A globally reachable unicast address.
    Public,
    /// Not public; reachable only where the deployment's allow-list names it.
    Internal(Kind),
    /// Never a destination, whatever the allow-list says (metadata, multicast, broadcast,
    /// unspecified: `0.0.0.0` connects to this host).
    Never(Kind),
}

impl Class {
    pub fn is_public(self) -> bool {
        self == Class::Public
    }
}

const fn v4(a: u8, b: u8, c: u8, d: u8) -> u32 {
    u32::from_be_bytes([a, b, c, d])
}

/// (network, prefix length, class), first match wins.
const V4: &[(u32, u8, Class)] = &[
    (v4(169, 254, 169, 254), 32, Class::Never(Kind::Metadata)),
    (v4(100, 100, 100, 200), 32, Class::Never(Kind::Metadata)),
    (v4(192, 0, 0, 192), 32, Class::Never(Kind::Metadata)),
    (v4(0, 0, 0, 0), 8, Class::Never(Kind::Unspecified)),
    (v4(255, 255, 255, 255), 32, Class::Never(Kind::Broadcast)),
    (v4(224, 0, 0, 0), 4, Class::Never(Kind::Multicast)),
    (v4(127, 0, 0, 0), 8, Class::Internal(Kind::Loopback)),
    (v4(10, 0, 0, 0), 8, Class::Internal(Kind::Private)),
    (v4(172, 16, 0, 0), 12, Class::Internal(Kind::Private)),
    (v4(192, 168, 0, 0), 16, Class::Internal(Kind::Private)),
    (v4(100, 64, 0, 0), 10, Class::Internal(Kind::SharedNat)),
    (v4(169, 254, 0, 0), 16, Class::Internal(Kind::LinkLocal)),
    (v4(192, 0, 0, 0), 24, Class::Internal(Kind::Reserved)),
    (v4(192, 0, 2, 0), 24, Class::Internal(Kind::Documentation)),
    (
        v4(198, 51, 100, 0),
        24,
        Class::Internal(Kind::Documentation),
    ),
    (v4(203, 0, 113, 0), 24, Class::Internal(Kind::Documentation)),
    (v4(198, 18, 0, 0), 15, Class::Internal(Kind::Benchmarking)),
    (v4(192, 88, 99, 0), 24, Class::Internal(Kind::Reserved)),
    (v4(240, 0, 0, 0), 4, Class::Internal(Kind::Reserved)),
];

fn in_v4(ip: u32, net: u32, len: u8) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    ip & mask == net & mask
}

fn in_v6(ip: u128, net: u128, len: u8) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    };
    ip & mask == net & mask
}

/// The class of an IPv4 address.
pub fn classify_v4(ip: Ipv4Addr) -> Class {
    let n = u32::from(ip);
    V4.iter()
        .find(|(net, len, _)| in_v4(n, *net, *len))
        .map_or(Class::Public, |(_, _, c)| *c)
}

/// An embedded IPv4 address's class, as seen through an IPv6 form that reaches it by
/// translation (NAT64, 6to4): a non-public IPv4 makes the IPv6 address non-public.
fn through(v4: Ipv4Addr) -> Class {
    classify_v4(v4)
}

const fn seg(s: [u16; 8]) -> u128 {
    let mut out = 0u128;
    let mut i = 0;
    while i < 8 {
        out = (out << 16) | s[i] as u128;
        i += 1;
    }
    out
}

/// The class of an IPv6 address, including the IPv4 forms carried in it (mapped, compatible,
/// NAT64, 6to4).
pub fn classify_v6(ip: Ipv6Addr) -> Class {
    let n = u128::from(ip);
    let low32 = Ipv4Addr::from(n as u32);
    if n == 0 {
        return Class::Never(Kind::Unspecified);
    }
    if n == 1 {
        return Class::Internal(Kind::Loopback);
    }
    // ::ffff:a.b.c.d: the IPv4 address itself on a dual-stack socket.
    if in_v6(n, seg([0, 0, 0, 0, 0, 0xffff, 0, 0]), 96) {
        return classify_v4(low32);
    }
    // ::a.b.c.d (deprecated IPv4-compatible): never legitimately used.
    if in_v6(n, 0, 96) {
        return match classify_v4(low32) {
            Class::Never(k) => Class::Never(k),
            Class::Internal(k) => Class::Internal(k),
            Class::Public => Class::Internal(Kind::Reserved),
        };
    }
    // NAT64 well-known prefix: reaches the embedded IPv4 address through a translator.
    if in_v6(n, seg([0x64, 0xff9b, 0, 0, 0, 0, 0, 0]), 96) {
        return through(low32);
    }
    // Local-use NAT64 (RFC 8215): the translator is a local one.
    if in_v6(n, seg([0x64, 0xff9b, 1, 0, 0, 0, 0, 0]), 48) {
        return Class::Internal(Kind::Reserved);
    }
    if in_v6(n, seg([0xff00, 0, 0, 0, 0, 0, 0, 0]), 8) {
        return Class::Never(Kind::Multicast);
    }
    if n == seg([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254]) {
        return Class::Never(Kind::Metadata);
    }
    if in_v6(n, seg([0xfc00, 0, 0, 0, 0, 0, 0, 0]), 7) {
        return Class::Internal(Kind::UniqueLocal);
    }
    if in_v6(n, seg([0xfe80, 0, 0, 0, 0, 0, 0, 0]), 10) {
        return Class::Internal(Kind::LinkLocal);
    }
    if in_v6(n, seg([0xfec0, 0, 0, 0, 0, 0, 0, 0]), 10) {
        return Class::Internal(Kind::SiteLocal);
    }
    // 6to4: 2002:AABB:CCDD::/48 reaches AA.BB.CC.DD through a relay.
    if in_v6(n, seg([0x2002, 0, 0, 0, 0, 0, 0, 0]), 16) {
        return through(Ipv4Addr::from((n >> 80) as u32));
    }
    if in_v6(n, seg([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0]), 32)
        || in_v6(n, seg([0x3fff, 0, 0, 0, 0, 0, 0, 0]), 20)
    {
        return Class::Internal(Kind::Documentation);
    }
    if in_v6(n, seg([0x2001, 2, 0, 0, 0, 0, 0, 0]), 48) {
        return Class::Internal(Kind::Benchmarking);
    }
    // 2001::/23 (IETF protocol assignments, Teredo 2001::/32, ORCHID), discard 100::/64,
    // and everything outside global unicast 2000::/3.
    if in_v6(n, seg([0x2001, 0, 0, 0, 0, 0, 0, 0]), 23)
        || in_v6(n, seg([0x100, 0, 0, 0, 0, 0, 0, 0]), 64)
        || !in_v6(n, seg([0x2000, 0, 0, 0, 0, 0, 0, 0]), 3)
    {
        return Class::Internal(Kind::Reserved);
    }
    Class::Public
}

/// The class of any address.
pub fn classify(ip: IpAddr) -> Class {
    match ip {
        IpAddr::V4(a) => classify_v4(a),
        IpAddr::V6(a) => classify_v6(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(s: &str) -> Class {
        classify(s.parse().unwrap())
    }

    #[test]
    fn the_cloud_metadata_address_is_never_a_destination_in_any_form() {
        for a in [
            "169.254.169.254",
            "::ffff:169.254.169.254",
            "::169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "fd00:ec2::254",
        ] {
            assert_eq!(c(a), Class::Never(Kind::Metadata), "{a}");
        }
        // Its neighbours are link-local (allow-listable, not public).
        assert_eq!(c("169.254.169.253"), Class::Internal(Kind::LinkLocal));
    }

    #[test]
    fn alibaba_and_oracle_metadata_addresses_are_never_a_destination_even_when_allow_listed() {
        for a in [
            "100.100.100.200",
            "::ffff:100.100.100.200",
            "64:ff9b::6464:64c8",
            "2002:6464:64c8::1",
            "192.0.0.192",
            "::ffff:192.0.0.192",
            "64:ff9b::c000:c0",
            "2002:c000:c0::1",
        ] {
            assert_eq!(c(a), Class::Never(Kind::Metadata), "{a}");
            let ip: IpAddr = a.parse().unwrap();
            let allow = crate::AllowList::parse(&["100.64.0.0/10", "192.0.0.0/24"]).unwrap();
            assert_eq!(
                crate::permits(&allow, crate::Scheme::Http, ip),
                Err(crate::Refusal::Never(Kind::Metadata)),
                "{a}"
            );
        }
        // Their neighbours stay internal (allow-listable, not public).
        assert_eq!(c("100.100.100.201"), Class::Internal(Kind::SharedNat));
        assert_eq!(c("192.0.0.193"), Class::Internal(Kind::Reserved));
    }

    #[test]
    fn private_loopback_and_shared_ipv4_ranges_are_internal() {
        for (a, k) in [
            ("10.0.0.5", Kind::Private),
            ("10.255.255.255", Kind::Private),
            ("172.16.0.1", Kind::Private),
            ("172.31.255.254", Kind::Private),
            ("192.168.1.1", Kind::Private),
            ("127.0.0.1", Kind::Loopback),
            ("127.255.255.254", Kind::Loopback),
            ("100.64.0.1", Kind::SharedNat),
            ("100.127.255.254", Kind::SharedNat),
            ("169.254.0.1", Kind::LinkLocal),
            ("192.0.2.10", Kind::Documentation),
            ("198.51.100.7", Kind::Documentation),
            ("203.0.113.9", Kind::Documentation),
            ("198.18.0.1", Kind::Benchmarking),
            ("198.19.255.255", Kind::Benchmarking),
            ("192.0.0.170", Kind::Reserved),
            ("240.0.0.1", Kind::Reserved),
        ] {
            assert_eq!(c(a), Class::Internal(k), "{a}");
        }
        for (a, k) in [
            ("0.0.0.0", Kind::Unspecified),
            ("0.1.2.3", Kind::Unspecified),
            ("255.255.255.255", Kind::Broadcast),
            ("224.0.0.1", Kind::Multicast),
            ("239.255.255.250", Kind::Multicast),
        ] {
            assert_eq!(c(a), Class::Never(k), "{a}");
        }
    }

    #[test]
    fn the_edges_of_the_ranges_are_public_just_outside() {
        for a in [
            "9.255.255.255",
            "11.0.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "192.169.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "1.1.1.1",
            "2606:4700::1111",
            "2a00:1450::1",
            "64:ff9b::101:101",
            "2002:101:101::1",
        ] {
            assert_eq!(c(a), Class::Public, "{a}");
        }
    }

    #[test]
    fn ipv6_forms_of_internal_ipv4_addresses_are_internal() {
        for (a, k) in [
            ("::ffff:127.0.0.1", Kind::Loopback),
            ("::ffff:7f00:1", Kind::Loopback),
            ("::ffff:10.0.0.5", Kind::Private),
            ("::127.0.0.1", Kind::Loopback),
            ("::10.0.0.5", Kind::Private),
            ("64:ff9b::7f00:1", Kind::Loopback),
            ("64:ff9b::a00:5", Kind::Private),
            ("2002:7f00:1::", Kind::Loopback),
            ("2002:c0a8:101::1", Kind::Private),
        ] {
            assert_eq!(c(a), Class::Internal(k), "{a}");
        }
        assert_eq!(c("::ffff:0.0.0.0"), Class::Never(Kind::Unspecified));
        assert_eq!(c("::1.2.3.4"), Class::Internal(Kind::Reserved));
        assert_eq!(c("64:ff9b:1::1"), Class::Internal(Kind::Reserved));
    }

    #[test]
    fn ipv6_special_ranges_are_not_public() {
        for (a, k) in [
            ("::1", Kind::Loopback),
            ("fc00::1", Kind::UniqueLocal),
            ("fd12:3456::1", Kind::UniqueLocal),
            ("fe80::1", Kind::LinkLocal),
            ("febf::1", Kind::LinkLocal),
            ("fec0::1", Kind::SiteLocal),
            ("2001:db8::1", Kind::Documentation),
            ("3fff::1", Kind::Documentation),
            ("2001:2::1", Kind::Benchmarking),
            ("2001::1", Kind::Reserved),
            ("2001:10::1", Kind::Reserved),
            ("100::1", Kind::Reserved),
            ("4000::1", Kind::Reserved),
            ("1::1", Kind::Reserved),
        ] {
            assert_eq!(c(a), Class::Internal(k), "{a}");
        }
        assert_eq!(c("::"), Class::Never(Kind::Unspecified));
        assert_eq!(c("ff02::1"), Class::Never(Kind::Multicast));
        assert_eq!(c("ff05::1:3"), Class::Never(Kind::Multicast));
    }

    proptest! {
        #[test]
        fn a_mapped_ipv6_address_classifies_as_its_ipv4_address(n in any::<u32>()) {
            let a = Ipv4Addr::from(n);
            prop_assert_eq!(classify_v6(a.to_ipv6_mapped()), classify_v4(a));
        }

        #[test]
        fn every_address_in_an_internal_ipv4_range_is_not_public(
            host in any::<u32>(),
            which in 0usize..7,
        ) {
            let (net, len) = [(v4(127,0,0,0),8), (v4(10,0,0,0),8), (v4(172,16,0,0),12),
                (v4(192,168,0,0),16), (v4(100,64,0,0),10), (v4(169,254,0,0),16),
                (v4(224,0,0,0),4)][which];
            let ip = Ipv4Addr::from(net | (host & !(u32::MAX << (32 - len))));
            prop_assert!(!classify_v4(ip).is_public(), "{}", ip);
            // And the same through NAT64 and 6to4.
            let nat64 = Ipv6Addr::from(seg([0x64, 0xff9b, 0, 0, 0, 0, 0, 0]) | u32::from(ip) as u128);
            prop_assert!(!classify_v6(nat64).is_public(), "{}", nat64);
            let sixto4 = Ipv6Addr::from(seg([0x2002, 0, 0, 0, 0, 0, 0, 0]) | ((u32::from(ip) as u128) << 80));
            prop_assert!(!classify_v6(sixto4).is_public(), "{}", sixto4);
        }

        #[test]
        fn every_address_in_unique_local_and_link_local_ipv6_is_not_public(low in any::<u128>()) {
            let ula = Ipv6Addr::from(seg([0xfc00, 0, 0, 0, 0, 0, 0, 0]) | (low >> 7));
            let ll = Ipv6Addr::from(seg([0xfe80, 0, 0, 0, 0, 0, 0, 0]) | (low >> 10));
            prop_assert!(!classify_v6(ula).is_public());
            prop_assert!(!classify_v6(ll).is_public());
        }

        #[test]
        fn any_address_classifies_without_panicking(n in any::<u128>(), m in any::<u32>()) {
            let _ = classify_v6(Ipv6Addr::from(n));
            let _ = classify_v4(Ipv4Addr::from(m));
        }
    }
}
