//! The few HTML pages a person sees: sign-in, device-code entry, errors, form_post.

use crate::directory::{DemoUser, DEMO_PASSWORD};

/// HTML-escapes text and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
body{font-family:"Segoe UI",Helvetica,Arial,sans-serif;background:#f2f2f2;margin:0;color:#1b1b1b}
main{max-width:440px;margin:48px auto;background:#fff;padding:36px 40px;box-shadow:0 2px 6px rgba(0,0,0,.2)}
h1{font-size:24px;font-weight:600;margin:0 0 4px}
p.sub{color:#555;margin:0 0 20px}
label{display:block;font-size:14px;margin:14px 0 4px}
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:8px;border:0;border-bottom:1px solid #666;font-size:15px}
button{margin-top:22px;background:#0067b8;color:#fff;border:0;padding:9px 28px;font-size:15px;cursor:pointer}
button.secondary{background:#ccc;color:#1b1b1b;margin-left:8px}
.err{color:#e81123;margin:10px 0}
.hint{font-size:13px;color:#555;background:#f7f7f7;padding:8px 10px;margin-top:18px}
ul.users{list-style:none;padding:0;margin:8px 0 0;max-height:220px;overflow:auto;border:1px solid #eee}
ul.users li{padding:6px 10px;border-bottom:1px solid #eee;cursor:pointer;font-size:14px}
ul.users li:hover{background:#eef5fc}
ul.users small{color:#666}
.brand{font-weight:600;color:#737373;margin-bottom:18px}
"#;

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{}</title><style>{}</style></head><body><main><div class=\"brand\">Switchboard demo tenant</div>{}</main></body></html>",
        esc(title),
        STYLE,
        body
    )
}

fn user_list(users: &[DemoUser]) -> String {
    let mut s = String::from("<ul class=\"users\">");
    for u in users.iter().take(60) {
        s.push_str(&format!(
            "<li onclick=\"document.getElementById('login').value=this.dataset.upn;document.getElementById('passwd').focus()\" data-upn=\"{upn}\">{name} <small>{upn} · {title}</small></li>",
            upn = esc(&u.user_principal_name),
            name = esc(&u.display_name),
            title = esc(&u.job_title)
        ));
    }
    s.push_str("</ul>");
    s
}

/// The sign-in page of `/authorize`; `hidden` carries the authorization request.
pub fn login(
    hidden: &[(String, String)],
    users: &[DemoUser],
    login_hint: &str,
    error: Option<&str>,
    action: &str,
) -> String {
    let mut fields = String::new();
    for (k, v) in hidden {
        fields.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            esc(k),
            esc(v)
        ));
    }
    let err = error
        .map(|e| format!("<p class=\"err\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    page(
        "Sign in to your account",
        &format!(
            "<h1>Sign in</h1><p class=\"sub\">to continue to Switchboard</p>{err}\
             <form method=\"post\" action=\"{action}\">{fields}\
             <label for=\"login\">Email or username</label><input type=\"text\" id=\"login\" name=\"login\" value=\"{hint}\" autocomplete=\"username\" required>\
             <label for=\"passwd\">Password</label><input type=\"password\" id=\"passwd\" name=\"passwd\" autocomplete=\"current-password\" required>\
             <button type=\"submit\">Sign in</button></form>\
             <p class=\"hint\">Demo users (click one to fill it in). Every demo user's password is <b>{pw}</b>.</p>{list}",
            action = esc(action),
            hint = esc(login_hint),
            pw = esc(DEMO_PASSWORD),
            list = user_list(users)
        ),
    )
}

/// The `/devicelogin` page.
pub fn device(users: &[DemoUser], code: &str, error: Option<&str>) -> String {
    let err = error
        .map(|e| format!("<p class=\"err\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    page(
        "Enter code",
        &format!(
            "<h1>Enter code</h1><p class=\"sub\">Enter the code displayed on your app or device, then sign in.</p>{err}\
             <form method=\"post\" action=\"/devicelogin\">\
             <label for=\"otc\">Code</label><input type=\"text\" id=\"otc\" name=\"otc\" value=\"{code}\" autocomplete=\"off\" required>\
             <label for=\"login\">Email or username</label><input type=\"text\" id=\"login\" name=\"login\" autocomplete=\"username\" required>\
             <label for=\"passwd\">Password</label><input type=\"password\" id=\"passwd\" name=\"passwd\" autocomplete=\"current-password\" required>\
             <button type=\"submit\" name=\"decision\" value=\"approve\">Sign in</button>\
             <button type=\"submit\" name=\"decision\" value=\"decline\" class=\"secondary\" formnovalidate>Cancel</button></form>\
             <p class=\"hint\">Every demo user's password is <b>{pw}</b>.</p>{list}",
            code = esc(code),
            pw = esc(DEMO_PASSWORD),
            list = user_list(users)
        ),
    )
}

/// A plain message page.
pub fn message(title: &str, text: &str) -> String {
    page(
        title,
        &format!("<h1>{}</h1><p>{}</p>", esc(title), esc(text)),
    )
}

/// An AADSTS error page (when the redirect URI cannot be trusted).
pub fn error(code: u32, text: &str) -> String {
    page("Sign in error", &format!("<h1>Sorry, but we're having trouble signing you in.</h1><p class=\"err\">AADSTS{code}: {}</p>", esc(text)))
}

/// `response_mode=form_post`: a self-submitting form to the redirect URI.
pub fn form_post(redirect_uri: &str, fields: &[(&str, String)]) -> String {
    let mut inputs = String::new();
    for (k, v) in fields {
        inputs.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            esc(k),
            esc(v)
        ));
    }
    format!(
        "<!doctype html><html><head><title>Working...</title></head><body onload=\"document.forms[0].submit()\"><form method=\"POST\" action=\"{}\">{}<noscript><button type=\"submit\">Continue</button></noscript></form></body></html>",
        esc(redirect_uri),
        inputs
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_that_matters() {
        assert_eq!(
            esc("<a href=\"x\">O'Brien & co</a>"),
            "&lt;a href=&quot;x&quot;&gt;O&#39;Brien &amp; co&lt;/a&gt;"
        );
        let html = login(
            &[("state".into(), "\"><script>".into())],
            &[],
            "",
            Some("<b>"),
            "/t/oauth2/v2.0/authorize",
        );
        assert!(!html.contains("\"><script>"));
        assert!(!html.contains("<b>\u{3c}"));
    }
}
