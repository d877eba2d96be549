//! What the tasks that parse their own arguments (`minikube`) need.

/// A clap error as one message without clap's own `error: ` prefix (`main` adds its own).
pub(crate) fn clap_message(err: &clap::Error) -> String {
    let text = err.render().to_string();
    text.trim_start_matches("error: ").trim_end().to_owned()
}
