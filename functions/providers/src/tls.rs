//! One crypto library for every HTTPS client: ring. reqwest is built without
//! a provider of its own and takes the process default installed here; the
//! AWS SDK's client is given ring directly (`videojobs_aws::http`). Linking
//! aws-lc as well would add 0.65 MB to each function binary.

/// Makes ring the process's default rustls provider. Call it before building
/// a reqwest client (a client built without a default panics); calling it
/// again does nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_installing_ring_is_the_default_and_a_second_call_keeps_it() {
        // Act
        install_crypto_provider();
        install_crypto_provider();

        // Assert
        let default = rustls::crypto::CryptoProvider::get_default().expect("a default provider");
        let ring = rustls::crypto::ring::default_provider();
        let names = |p: &rustls::crypto::CryptoProvider| p.cipher_suites.iter().map(|s| s.suite()).collect::<Vec<_>>();
        assert_eq!(names(default), names(&ring));
    }
}
