//! The shared vectors: real hashes made by passlib, argon2-cffi and bcrypt. Each verifies with its
//! own password and with no other, and only hashes with exactly the configured Argon2id
//! parameters count as current.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use fraise_core::password::{Argon2Params, PasswordHasher, Verification};

#[derive(serde::Deserialize)]
struct Vectors {
    vectors: Vec<Vector>,
}

#[derive(serde::Deserialize)]
struct Vector {
    made_by: String,
    password: String,
    hash: String,
}

fn vectors() -> Vec<Vector> {
    let v: Vectors = serde_json::from_str(include_str!("data/password-hashes.json")).unwrap();
    assert!(v.vectors.len() >= 5);
    v.vectors
}

#[test]
fn every_vector_verifies_with_its_password_and_no_other() {
    let hasher = PasswordHasher::new(Argon2Params::default()).unwrap();
    let all = vectors();
    for v in &all {
        let current = v.hash.starts_with("$argon2id$v=19$m=102400,t=2,p=8$");
        let expected = if current { Verification::Valid } else { Verification::ValidNeedsRehash };
        assert_eq!(hasher.verify(&v.password, &v.hash), expected, "{}", v.made_by);
        for other in all.iter().filter(|o| o.password != v.password) {
            assert_eq!(hasher.verify(&other.password, &v.hash), Verification::Invalid, "{}", v.made_by);
        }
        assert_eq!(hasher.verify(&format!("{} ", v.password), &v.hash), Verification::Invalid);
    }
}

#[test]
fn our_hashes_use_the_originals_format() {
    let hasher = PasswordHasher::new(Argon2Params::default()).unwrap();
    let ours = hasher.hash("TestPassword123!").unwrap();
    // Same shape as passlib's: 16-byte salt (22 b64 chars), 32-byte digest (43 b64 chars).
    let parts: Vec<&str> = ours.split('$').collect();
    assert_eq!(&parts[..4], &["", "argon2id", "v=19", "m=102400,t=2,p=8"]);
    assert_eq!((parts[4].len(), parts[5].len()), (22, 43));
    assert_eq!(hasher.verify("TestPassword123!", &ours), Verification::Valid);
}
