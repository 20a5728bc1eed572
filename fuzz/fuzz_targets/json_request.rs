//! JSON request decoding, exactly as the routes do it (`fraise_http::extract::parse_json`), into
//! every request body type, followed by the domain checks a decoded body meets first (email
//! parsing, the password policy). Properties: nothing panics; every refusal is a 400 envelope.
#![no_main]
use axum::response::IntoResponse as _;
use fraise_core::Email;
use fraise_core::password::PasswordPolicy;
use fraise_http::dto::{
    ChangePasswordRequest, EmailRequest, LoginRequest, LogoutRequest, OptionalEmail, PatchMeRequest, RefreshRequest,
    RegisterRequest, ResetPasswordRequest, TokenRequest,
};
use fraise_http::extract::parse_json;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;

fn decode<T: DeserializeOwned>(data: &[u8]) -> Option<T> {
    match parse_json::<T>(data) {
        Ok(v) => Some(v),
        Err(e) => {
            assert_eq!(e.into_response().status().as_u16(), 400);
            None
        }
    }
}

fn domain(email: &str, password: &str) {
    let _ = Email::parse(email);
    let _ = PasswordPolicy::default().violations(password);
}

fuzz_target!(|data: &[u8]| {
    if let Some(r) = decode::<RegisterRequest>(data) {
        domain(&r.email, &r.password);
    }
    if let Some(r) = decode::<LoginRequest>(data) {
        domain(&r.email, &r.password);
    }
    let _ = decode::<RefreshRequest>(data);
    let _ = decode::<LogoutRequest>(data);
    if let Some(r) = decode::<ChangePasswordRequest>(data) {
        domain("", &r.new_password);
    }
    if let Some(r) = decode::<EmailRequest>(data) {
        let _ = Email::parse(&r.email);
    }
    let _ = decode::<OptionalEmail>(data);
    let _ = decode::<ResetPasswordRequest>(data);
    let _ = decode::<TokenRequest>(data);
    let _ = decode::<PatchMeRequest>(data);
});
