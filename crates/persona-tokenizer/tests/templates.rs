//! Chat templates must render exactly like HF transformers' jinja2 environment. The goldens in
//! tests/data/template_goldens.json were rendered by jinja2 (tests/data/make_template_goldens.py).

use persona_tokenizer::{ChatTemplate, Message, TokenizerError};

#[derive(serde::Deserialize)]
struct Golden {
    name: String,
    template: String,
    bos_token: String,
    eos_token: String,
    messages: Vec<Message>,
    add_generation_prompt: bool,
    expected: String,
}

/// The goldens were rendered with `strftime_now` pinned to this date.
const GOLDEN_DATE: &str = "26 Jul 2024";

/// Replaces the date after "Today Date: " (today's, from `strftime_now`) with the golden's.
fn pin_date(text: &str) -> String {
    let Some(start) = text.find("Today Date: ").map(|i| i + "Today Date: ".len()) else {
        return text.to_owned();
    };
    let end = start + text[start..].find('\n').expect("a newline after the date");
    let date = &text[start..end];
    // "%d %b %Y": two digits, a month abbreviation, four digits.
    let parts: Vec<&str> = date.split(' ').collect();
    assert!(
        parts.len() == 3 && parts[0].len() == 2 && parts[1].len() == 3 && parts[2].len() == 4,
        "strftime_now(\"%d %b %Y\") gave {date:?}"
    );
    format!("{}{GOLDEN_DATE}{}", &text[..start], &text[end..])
}

#[test]
fn renders_like_jinja2() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/template_goldens.json"
    );
    let goldens: Vec<Golden> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(goldens.len(), 11);
    for g in goldens {
        let template = ChatTemplate::new(&g.template, &g.bos_token, &g.eos_token)
            .unwrap_or_else(|e| panic!("{}: {e}", g.name));
        assert_eq!(template.source(), g.template);
        let text = template
            .render(&g.messages, g.add_generation_prompt)
            .unwrap_or_else(|e| panic!("{}: {e}", g.name));
        assert_eq!(pin_date(&text), g.expected, "case {}", g.name);
    }
}

#[test]
fn raise_exception_aborts_rendering() {
    let source = "{% if messages[0].role != 'user' %}{{ raise_exception('Conversation roles must start with user') }}{% endif %}ok";
    let template = ChatTemplate::new(source, "", "").unwrap();
    assert_eq!(
        template
            .render(&[Message::new("user", "hi")], false)
            .unwrap(),
        "ok"
    );
    let err = template
        .render(&[Message::new("assistant", "hi")], false)
        .unwrap_err();
    assert!(matches!(err, TokenizerError::TemplateRender(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("Conversation roles must start with user"),
        "{err}"
    );
}

#[test]
fn bad_templates_are_errors() {
    let err = ChatTemplate::new("{% for m in messages %}{{ m.content }}", "", "").unwrap_err();
    assert!(matches!(err, TokenizerError::TemplateSyntax(_)), "{err:?}");
    assert!(err.to_string().contains("does not compile"), "{err}");

    // Compiles, but fails at render time.
    let template = ChatTemplate::new("{{ messages | no_such_filter }}", "", "");
    let err = match template {
        Ok(t) => t.render(&[], false).unwrap_err(),
        Err(e) => e,
    };
    assert!(err.to_string().contains("no_such_filter"), "{err}");

    let template = ChatTemplate::new("{{ strftime_now('%Q') }}", "", "").unwrap();
    let err = template.render(&[], false).unwrap_err();
    assert!(
        err.to_string().contains("unsupported directive %Q"),
        "{err}"
    );
}

#[test]
fn tokenizer_config_forms() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer_config.json");
    let write = |json: serde_json::Value| std::fs::write(&path, json.to_string()).unwrap();
    let render = |t: &ChatTemplate| t.render(&[Message::new("user", "x")], true).unwrap();

    // A plain string and special tokens as {"content": ..} objects.
    write(serde_json::json!({
        "chat_template": "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}",
        "bos_token": {"content": "<s>", "lstrip": false},
        "eos_token": "</s>",
    }));
    assert_eq!(
        render(&ChatTemplate::from_tokenizer_config(&path).unwrap()),
        "<s>x</s>"
    );

    // A list of named templates: "default" wins; a null bos_token renders as "".
    write(serde_json::json!({
        "chat_template": [
            {"name": "tool_use", "template": "tools"},
            {"name": "default", "template": "[{{ bos_token }}]default"},
        ],
        "bos_token": null,
    }));
    assert_eq!(
        render(&ChatTemplate::from_tokenizer_config(&path).unwrap()),
        "[]default"
    );

    // No chat_template key: chat_template.jinja beside the config.
    write(serde_json::json!({"eos_token": "</s>"}));
    let err = ChatTemplate::from_tokenizer_config(&path).unwrap_err();
    assert!(err.to_string().contains("no chat_template"), "{err}");
    std::fs::write(
        dir.path().join("chat_template.jinja"),
        "jinja{{ eos_token }}",
    )
    .unwrap();
    assert_eq!(
        render(&ChatTemplate::from_tokenizer_config(&path).unwrap()),
        "jinja</s>"
    );

    // Broken JSON and a missing file name the file.
    std::fs::write(&path, "{ not json").unwrap();
    let err = ChatTemplate::from_tokenizer_config(&path).unwrap_err();
    assert!(
        matches!(err, TokenizerError::InvalidConfig { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("tokenizer_config.json"), "{err}");
    let missing = dir.path().join("nope.json");
    let err = ChatTemplate::from_tokenizer_config(&missing).unwrap_err();
    assert!(matches!(err, TokenizerError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("nope.json"), "{err}");
}
