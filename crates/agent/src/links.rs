//! `tel:` and `sip:` links (RFC 3966, RFC 3261 §19.1) opened in the app: what goes into the
//! dial box. A link comes from anyone (a web page, a mail): it only fills the box and brings
//! the window forward; the person presses Call, and the dial box's own checks
//! ([`dial_target`](crate::desk::dial_target)) decide what may be called. Parameters and SIP
//! URI headers (`;…`, `?…`) are dropped, never carried into a request.

/// The longest link taken, and the longest text put into the dial box.
pub const LINK_MAX: usize = 256;

/// What link `link` asks to call, as the dial box takes it (`+1-201-555-0123`,
/// `tel:7042`, `MeganB@contoso.example`), or `None` for anything that is no `tel:`, `sip:` or
/// `sips:` link with something printable to call.
pub fn link_target(link: &str) -> Option<String> {
    let link = link.trim();
    if link.len() > LINK_MAX {
        return None;
    }
    let (scheme, rest) = link.split_once(':')?;
    if !["tel", "sip", "sips"]
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s))
    {
        return None;
    }
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    // Parameters (`;phone-context=…`, `;transport=tls`) and SIP URI headers (`?subject=…`).
    let address = rest.split([';', '?']).next().unwrap_or_default();
    let decoded = percent_encoding::percent_decode_str(address)
        .decode_utf8()
        .ok()?;
    if decoded
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() && c != ' ')
    {
        return None;
    }
    let target = decoded.trim();
    // sip:user@host with a password (user:pass@host) is never taken.
    if target.is_empty() || target.contains(':') && target.contains('@') {
        return None;
    }
    crate::call::printable(target, 128)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tel_links_keep_the_number_and_drop_parameters() {
        // RFC 3966's own examples.
        assert_eq!(
            link_target("tel:+1-201-555-0123").as_deref(),
            Some("+1-201-555-0123")
        );
        assert_eq!(
            link_target("tel:7042;phone-context=example.com").as_deref(),
            Some("7042")
        );
        assert_eq!(
            link_target("tel:863-1234;phone-context=+1-914-555").as_deref(),
            Some("863-1234")
        );
        assert_eq!(
            link_target("TEL:%2B15551234567").as_deref(),
            Some("+15551234567")
        );
        assert_eq!(
            link_target("tel://+4930123456").as_deref(),
            Some("+4930123456")
        );
    }

    #[test]
    fn sip_links_keep_user_and_host_and_never_headers() {
        // RFC 3261 §19.1.3's examples.
        assert_eq!(
            link_target("sip:alice@atlanta.com").as_deref(),
            Some("alice@atlanta.com")
        );
        assert_eq!(
            link_target("sips:alice@atlanta.com?subject=project%20x&priority=urgent").as_deref(),
            Some("alice@atlanta.com")
        );
        assert_eq!(
            link_target("sip:+1-212-555-1212:1234@gateway.com;user=phone"),
            None,
            "a password in the link is refused"
        );
        assert_eq!(
            link_target("sip:alice@atlanta.com;maddr=239.255.255.1;ttl=15").as_deref(),
            Some("alice@atlanta.com")
        );
        assert_eq!(
            link_target("sip:MeganB@contoso.example?Replaces=abc%3Bto-tag%3D1").as_deref(),
            Some("MeganB@contoso.example")
        );
    }

    #[test]
    fn anything_else_is_no_link_to_call() {
        for bad in [
            "",
            "tel:",
            "sip:;transport=tcp",
            "https://example.com",
            "javascript:alert(1)",
            "mailto:alice@atlanta.com",
            "tel:%0D%0AVia:%20evil",
            "tel:%FF%FE",
            "sip:a%09b@example.com",
        ] {
            assert_eq!(link_target(bad), None, "{bad}");
        }
        assert_eq!(link_target(&format!("tel:{}", "1".repeat(300))), None);
    }
}
