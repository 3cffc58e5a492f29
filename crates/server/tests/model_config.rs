//! The `[llm]` section as an operator writes it: every mistake stops start-up with the key
//! to fix, and no key is ever read from the file or repeated in a message.
// figment's `Jail` closures return figment's own (large) error type.
#![allow(clippy::result_large_err)]

use std::path::Path;

use concierge_server::Config;
use figment::Jail;

fn load_in(jail: &Jail, toml: &str) -> Result<Config, String> {
    jail.create_file("concierge.toml", toml).expect("write config");
    Config::load(Some(Path::new("concierge.toml"))).map_err(|e| e.to_string())
}

/// Loads `toml`, expecting it to be refused with a message naming `key`.
fn refused(jail: &Jail, toml: &str, key: &str) -> String {
    let err = load_in(jail, toml).expect_err("refused");
    assert!(err.contains(&format!("`{key}`")), "expected the key `{key}` in: {err}");
    err
}

const OPENAI: &str = "[llm.providers.openai]\nkind = \"openai\"\nmodel = \"gpt-4o-mini-2024-07-18\"\n";

#[test]
fn a_complete_section_loads_with_the_key_from_the_environment() {
    Jail::expect_with(|jail| {
        jail.set_env("OPENAI_API_KEY", "sk-test-abc");
        let toml = format!(
            "[llm]\nprovider = \"openai\"\nfallbacks = []\ndeadline_secs = 20\n{OPENAI}api_key_env = \"OPENAI_API_KEY\"\n\
             [llm.retry]\nmax_attempts = 2\nbase_delay = \"100ms\"\n[llm.breaker]\nfailure_threshold = 3\n\
             [llm.cache]\nenabled = false\n\
             [llm.prices.\"openai/gpt-4o-mini-2024-07-18\"]\ninput_per_million = 0.15\noutput_per_million = 0.6\n"
        );
        let config = load_in(jail, &toml).expect("valid");
        assert_eq!(config.llm.provider, "openai");
        assert_eq!(config.llm.retry.max_attempts, 2);
        assert_eq!(config.llm.breaker.failure_threshold, 3);
        assert!(!config.llm.cache.enabled);
        assert!(config.secrets.llm_key("OPENAI_API_KEY").is_some());
        assert!(!format!("{config:?}").contains("sk-test-abc"), "the key never prints");
        Ok(())
    });
}

#[test]
fn without_a_section_the_embedded_model_answers() {
    Jail::expect_with(|jail| {
        let result = load_in(jail, "");
        if cfg!(feature = "local") {
            let config = result.expect("valid");
            assert_eq!(config.llm.provider, "local");
            assert_eq!(
                config.llm.provider_config("local").expect("built in").model(),
                "qwen2.5-coder-0.5b-instruct-q8_0-mix"
            );
        } else {
            assert!(!result.expect("valid").llm.enabled(), "a build without it has no model by default");
        }
        Ok(())
    });
}

#[test]
fn the_environment_can_switch_the_model_off() {
    Jail::expect_with(|jail| {
        jail.set_env("CONCIERGE_LLM__PROVIDER", "none");
        let config = load_in(jail, "").expect("valid");
        assert!(!config.llm.enabled());
        Ok(())
    });
}

#[test]
fn unknown_provider_names_are_refused_naming_the_key() {
    Jail::expect_with(|jail| {
        let err = refused(jail, "[llm]\nprovider = \"opneai\"\n", "llm.provider");
        assert!(err.contains("opneai"), "{err}");
        refused(jail, &format!("[llm]\nprovider = \"openai\"\nfallbacks = [\"nope\"]\n{OPENAI}"), "llm.fallbacks");
        refused(jail, &format!("[llm]\nprovider = \"openai\"\nfallbacks = [\"openai\"]\n{OPENAI}"), "llm.fallbacks");
        refused(
            jail,
            &format!("[llm]\nprovider = \"openai\"\n[llm.routing]\nlarge = \"big\"\n{OPENAI}"),
            "llm.routing.large",
        );
        refused(
            jail,
            &format!("[llm]\nprovider = \"openai\"\n[llm.routing]\nsmall = \"tiny\"\nlarge = \"openai\"\n{OPENAI}"),
            "llm.routing.small",
        );
        Ok(())
    });
}

#[test]
fn a_provider_without_a_pinned_model_is_refused() {
    Jail::expect_with(|jail| {
        refused(jail, "[llm]\nprovider = \"o\"\n[llm.providers.o]\nkind = \"openai\"\n", "llm.providers.o.model");
        refused(
            jail,
            "[llm]\nprovider = \"o\"\n[llm.providers.o]\nkind = \"openai\"\nmodel = \" \"\n",
            "llm.providers.o.model",
        );
        refused(
            jail,
            "[llm]\nprovider = \"c\"\n[llm.providers.c]\nkind = \"anthropic\"\nmodel = \"\"\n",
            "llm.providers.c.model",
        );
        Ok(())
    });
}

#[test]
fn a_missing_key_variable_is_named_and_its_value_never_shown() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let toml = format!("[llm]\nprovider = \"openai\"\n{OPENAI}api_key_env = \"CONCIERGE_TEST_ABSENT_KEY\"\n");
        let err = refused(jail, &toml, "llm.providers.openai.api_key_env");
        assert!(err.contains("CONCIERGE_TEST_ABSENT_KEY") && err.contains("not set"), "{err}");
        // Anthropic's key variable has a default name, and is required all the same.
        let toml =
            "[llm]\nprovider = \"c\"\n[llm.providers.c]\nkind = \"anthropic\"\nmodel = \"claude-3-5-haiku-20241022\"\n";
        let err = refused(jail, toml, "llm.providers.c.api_key_env");
        assert!(err.contains("ANTHROPIC_API_KEY"), "{err}");
        jail.set_env("ANTHROPIC_API_KEY", "sk-ant-test");
        assert!(load_in(jail, toml).is_ok());
        Ok(())
    });
}

#[test]
fn a_key_written_in_the_file_is_refused_and_not_repeated() {
    Jail::expect_with(|jail| {
        let toml = format!("[llm]\nprovider = \"openai\"\n{OPENAI}api_key = \"sk-live-do-not-print\"\n");
        let err = refused(jail, &toml, "llm.providers.openai.api_key");
        assert!(err.contains("environment") && !err.contains("sk-live-do-not-print"), "{err}");
        let toml = format!("[llm]\nprovider = \"openai\"\n{OPENAI}api_key_env = \"sk-live-do-not-print\"\n");
        let err = refused(jail, &toml, "llm.providers.openai.api_key_env");
        assert!(!err.contains("sk-live-do-not-print"), "{err}");
        let toml = "[llm]\nprovider = \"o\"\n[llm.providers.o]\nkind = \"openai\"\nmodel = \"m\"\n\
                    base_url = \"https://user:sk-live@api.example/v1\"\n";
        let err = refused(jail, toml, "llm.providers.o.base_url");
        assert!(!err.contains("sk-live"), "{err}");
        Ok(())
    });
}

#[test]
fn out_of_range_settings_and_bad_prices_and_rules_name_their_key() {
    Jail::expect_with(|jail| {
        refused(jail, "[llm]\nprovider = \"none\"\ndeadline_secs = 0\n", "llm.deadline_secs");
        refused(jail, "[llm]\nprovider = \"none\"\nmax_answer_tokens = 0\n", "llm.max_answer_tokens");
        refused(jail, "[llm]\nprovider = \"none\"\n[llm.cache]\nmax_entries = 0\n", "llm.cache.max_entries");
        refused(
            jail,
            "[llm]\nprovider = \"none\"\n[llm.prices.\"openai/x\"]\ninput_per_million = -1\noutput_per_million = 1\n",
            "llm.prices.\"openai/x\".input_per_million",
        );
        refused(
            jail,
            &format!("[llm]\nprovider = \"openai\"\n[llm.routing]\nlarge = \"openai\"\nmin_confidence = 3\n{OPENAI}"),
            "llm.routing.min_confidence",
        );
        refused(jail, "[llm]\nprovider = \"none\"\nfallbacks = [\"local\"]\n", "llm.fallbacks");
        Ok(())
    });
}

#[test]
fn unknown_keys_and_kinds_are_refused() {
    Jail::expect_with(|jail| {
        let err = load_in(jail, "[llm]\nprovder = \"none\"\n").expect_err("refused");
        assert!(err.contains("provder"), "{err}");
        let err = load_in(jail, "[llm]\nprovider = \"x\"\n[llm.providers.x]\nkind = \"gemini\"\nmodel = \"m\"\n")
            .expect_err("refused");
        assert!(err.contains("gemini") && err.contains("llm.providers.x"), "{err}");
        let err =
            load_in(jail, &format!("[llm]\nprovider = \"openai\"\n{OPENAI}temprature = 0\n")).expect_err("refused");
        assert!(err.contains("temprature"), "{err}");
        let err = load_in(
            jail,
            &format!("[llm]\nprovider = \"openai\"\n[llm.routing]\nlarge = \"openai\"\nmarkers = []\n{OPENAI}"),
        )
        .expect_err("refused");
        assert!(err.contains("markers") && err.contains("llm.routing"), "{err}");
        Ok(())
    });
}

#[test]
fn native_function_calling_and_routing_by_a_model_need_a_model() {
    Jail::expect_with(|jail| {
        refused(jail, "[llm]\nprovider = \"none\"\n[router]\nllm = \"unsure\"\n", "router.llm");
        refused(jail, "[llm]\nprovider = \"none\"\n[agent]\nfunction_calling = \"native\"\n", "agent.function_calling");
        let extraction = load_in(jail, "[llm]\nprovider = \"none\"\n[agent]\nfunction_calling = \"extraction\"\n");
        assert!(extraction.is_ok(), "{extraction:?}");
        let toml = format!("[llm]\nprovider = \"openai\"\n{OPENAI}[agent]\nfunction_calling = \"native\"\n");
        let config = load_in(jail, &toml).expect("a remote model can choose tools");
        assert!(config.llm.remote_only());
        let err = load_in(jail, "[agent]\nfunction_calling = \"sometimes\"\n").expect_err("refused");
        assert!(err.contains("sometimes"), "{err}");
        Ok(())
    });
}

#[test]
fn gateway_models_are_declared_providers_other_than_the_agent() {
    Jail::expect_with(|jail| {
        refused(jail, "[llm]\nprovider = \"none\"\ngateway = [\"nope\"]\n", "llm.gateway");
        refused(
            jail,
            &format!("[llm]\nprovider = \"none\"\ngateway = [\"openai\", \"openai\"]\n{OPENAI}"),
            "llm.gateway",
        );
        refused(
            jail,
            &format!("[agent]\nname = \"openai\"\n[llm]\nprovider = \"none\"\ngateway = [\"openai\"]\n{OPENAI}"),
            "llm.gateway",
        );
        // A gateway model is called, so its key must be there.
        refused(
            jail,
            &format!("[llm]\nprovider = \"none\"\ngateway = [\"openai\"]\n{OPENAI}api_key_env = \"GATEWAY_KEY\"\n"),
            "llm.providers.openai.api_key_env",
        );
        let config =
            load_in(jail, &format!("[llm]\nprovider = \"none\"\ngateway = [\"openai\"]\n{OPENAI}")).expect("valid");
        assert_eq!(config.llm.gateway, ["openai"]);
        assert!(!config.llm.enabled(), "the agent still has no model");
        Ok(())
    });
}
