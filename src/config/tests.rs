use super::*;

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

#[test]
fn empty_file_gives_defaults() {
    let c = Config::from_parts("t", "", no_env()).expect("defaults are valid");
    assert_eq!(c, Config::default());
}

#[test]
fn unknown_key_is_named_with_its_position() {
    let e = Config::from_parts(
        "tern.toml",
        "[bridge]\nhttp_lisen = \"1.2.3.4:1\"\n",
        no_env(),
    )
    .expect_err("typo must be refused")
    .to_string();
    assert!(e.contains("tern.toml"), "{e}");
    assert!(e.contains("http_lisen"), "{e}");
    assert!(e.contains("line 2"), "{e}");
}

#[test]
fn bad_value_is_named() {
    let e = Config::from_parts("t", "[media]\ncodecs = [\"opus\", \"vp7\"]\n", no_env())
        .expect_err("unknown codec")
        .to_string();
    assert!(e.contains("vp7"), "{e}");
}

#[test]
fn the_grpc_limit_needs_a_burst_unless_it_is_off() {
    let off = Config::from_parts(
        "t",
        "[focus]\ngrpc_rate_limit = 0\ngrpc_rate_burst = 0\n",
        no_env(),
    );
    assert_eq!(off.expect("0 is off").focus.grpc_rate_limit, 0);
    let e = Config::from_parts(
        "t",
        "[focus]\ngrpc_rate_limit = 5\ngrpc_rate_burst = 0\n",
        no_env(),
    )
    .expect_err("a limit nothing passes")
    .to_string();
    assert!(e.contains("focus.grpc_rate_burst"), "{e}");
}

#[test]
fn talk_detection_is_configurable_within_bounds() {
    let c = Config::from_parts(
        "t",
        "[media]\ntalk_sensitivity = 80\ntalk_interval_ms = 5000\n",
        no_env(),
    )
    .expect("valid");
    assert_eq!(
        (c.media.talk_sensitivity, c.media.talk_interval_ms),
        (80, 5000)
    );
    for (text, named) in [
        ("talk_sensitivity = 101", "talk_sensitivity"),
        ("talk_interval_ms = 100", "talk_interval_ms"),
    ] {
        let e = Config::from_parts("t", &format!("[media]\n{text}\n"), no_env())
            .expect_err(text)
            .to_string();
        assert!(e.contains(named), "{e}");
    }
}

#[test]
fn bitrate_caps_and_estimation_are_configurable_within_bounds() {
    let c = Config::from_parts(
        "t",
        "[media]\ncamera_max_kbps = 800\nscreen_max_kbps = 1500\nbandwidth_estimation = false\n",
        no_env(),
    )
    .expect("valid");
    assert_eq!(
        (c.media.camera_max_kbps, c.media.screen_max_kbps),
        (800, 1500)
    );
    assert!(!c.media.bandwidth_estimation);
    for (text, named) in [
        ("camera_max_kbps = 99", "camera_max_kbps"),
        ("screen_max_kbps = 50", "screen_max_kbps"),
        ("initial_estimate_kbps = 10", "initial_estimate_kbps"),
        ("max_probe_kbps = 200", "max_probe_kbps"),
    ] {
        let e = Config::from_parts("t", &format!("[media]\n{text}\n"), no_env())
            .expect_err(text)
            .to_string();
        assert!(e.contains(named), "{e}");
    }
}

#[test]
fn environment_overrides_file_and_is_typed() {
    let env = vec![
        ("TERN_BRIDGE_SHARDS".to_string(), "3".to_string()),
        ("TERN_AUTH_SECRET".to_string(), "s3cret".to_string()),
        ("PATH".to_string(), "/bin".to_string()),
    ];
    let c = Config::from_parts("t", "[bridge]\nshards = 1\n", env).expect("valid");
    assert_eq!(c.bridge.shards, 3);
    assert_eq!(c.auth.secret, "s3cret");
}

#[test]
fn unrelated_environment_sections_are_ignored() {
    let env = vec![("TERN_SIM_SEED".to_string(), "3".to_string())];
    assert!(Config::from_parts("t", "", env).is_ok());
}

#[test]
fn unknown_environment_key_is_refused() {
    let env = vec![("TERN_BRIDGE_SHRADS".to_string(), "3".to_string())];
    let e = Config::from_parts("t", "", env)
        .expect_err("typo")
        .to_string();
    assert!(e.contains("shrads"), "{e}");
}

#[test]
fn relay_section_parses_and_is_overridable() {
    let text = "[relay]\nlisten = \"127.0.0.1:7443\"\nca_cert = \"ca.pem\"\ncert = \"b.pem\"\nkey = \"b-key.pem\"\n";
    let env = vec![(
        "TERN_RELAY_ADVERTISE".to_string(),
        "192.0.2.1:7443".to_string(),
    )];
    let c = Config::from_parts("t", text, env).expect("valid");
    assert_eq!(
        c.relay.listen,
        Some(SocketAddr::from(([127, 0, 0, 1], 7443)))
    );
    assert_eq!(c.relay.cert.as_deref(), Some(Path::new("b.pem")));
    assert_eq!(
        c.relay.advertise_addr(),
        Some(SocketAddr::from(([192, 0, 2, 1], 7443)))
    );
    assert!(!Config::default().relay.is_configured());
}

#[test]
fn relay_unknown_key_and_missing_files_are_named() {
    let e = Config::from_parts(
        "tern.toml",
        "[relay]\nlisten = \"127.0.0.1:1\"\ncerts = \"x\"\n",
        no_env(),
    )
    .expect_err("typo")
    .to_string();
    assert!(e.contains("certs") && e.contains("line 3"), "{e}");
    let e = Config::from_parts("t", "[relay]\nlisten = \"127.0.0.1:1\"\n", no_env())
        .expect_err("no credentials")
        .to_string();
    assert!(e.contains("relay.ca_cert is required"), "{e}");
    let env = vec![("TERN_RELAY_LISTN".to_string(), "127.0.0.1:1".to_string())];
    let e = Config::from_parts("t", "", env)
        .expect_err("typo")
        .to_string();
    assert!(e.contains("listn"), "{e}");
}

#[test]
fn wildcard_relay_address_needs_advertise_address() {
    let text = "[relay]\nlisten = \"0.0.0.0:7443\"\nca_cert = \"c\"\ncert = \"b\"\nkey = \"k\"\n";
    let e = Config::from_parts("t", text, no_env())
        .expect_err("no advertise address")
        .to_string();
    assert!(e.contains("relay.advertise"), "{e}");
}

#[test]
fn turn_urls_need_the_turn_scheme_and_a_secret() {
    let e = Config::from_parts("t", "[turn]\nurls = [\"turn:x:3478\"]\n", no_env())
        .expect_err("no secret")
        .to_string();
    assert!(e.contains("turn.secret is empty"), "{e}");
    let e = Config::from_parts(
        "t",
        "[turn]\nurls = [\"stun:x:3478\"]\nsecret = \"s\"\n",
        no_env(),
    )
    .expect_err("not turn:")
    .to_string();
    assert!(
        e.contains("\"stun:x:3478\" is not a turn: or turns: URL"),
        "{e}"
    );
    let env = vec![
        (
            "TERN_TURN_URLS".to_string(),
            "[\"turns:t.example.com:5349\"]".to_string(),
        ),
        ("TERN_TURN_SECRET".to_string(), "s3cret".to_string()),
    ];
    let cfg = Config::from_parts("t", "", env).expect("valid from the environment");
    assert_eq!(cfg.turn.urls, vec!["turns:t.example.com:5349".to_string()]);
    assert_eq!(cfg.turn.secret, "s3cret");
}

#[test]
fn wildcard_media_address_needs_advertise_address() {
    let e = Config::from_parts(
        "t",
        "[bridge]\nmedia_listen = \"0.0.0.0:10000\"\n",
        no_env(),
    )
    .expect_err("no advertise address")
    .to_string();
    assert!(e.contains("advertise_addr"), "{e}");
}

#[test]
fn rtx_cache_age_out_of_range_is_refused() {
    let e = Config::from_parts("t", "[media]\nrtx_cache_ms = 20\n", no_env())
        .expect_err("20 ms is too short to answer any NACK")
        .to_string();
    assert!(e.contains("media.rtx_cache_ms"), "{e}");
    let c = Config::from_parts("t", "[media]\nrtx_cache_ms = 2500\n", no_env())
        .expect("2.5 s is allowed");
    assert_eq!(c.media.rtx_cache_ms, 2500);
}
