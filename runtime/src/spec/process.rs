//! The process's arguments, environment and working directory, merged from the container
//! definition and the image configuration the way Docker merges them.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use oci_spec::image::Config as ImageConfig;

use super::SpecError;
use crate::model::ContainerSpec;

/// PATH given to a process when neither the image nor the container definition sets one
/// (Docker's and containerd's default for Linux).
pub(super) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's entrypoint/command merge (`daemon/create.go`, `merge`):
///
/// - no entrypoint in the definition: the image's Entrypoint is kept, and the image's Cmd too
///   unless the definition has a command, which replaces it;
/// - an entrypoint in the definition replaces the image's Entrypoint and drops the image's Cmd;
///   only the definition's own command follows it;
/// - an empty list counts as "not set", except that an empty entrypoint still removes the
///   image's Entrypoint (Docker's `--entrypoint ""`: run the Cmd alone).
///
/// The result is entrypoint followed by command; nothing at all is an error.
pub(super) fn args(
    container: &ContainerSpec,
    image: Option<&ImageConfig>,
) -> Result<Vec<String>, SpecError> {
    let image_entrypoint = image.and_then(|c| c.entrypoint().as_deref());
    let image_cmd = image.and_then(|c| c.cmd().as_deref());
    let command = container.command.as_deref().filter(|c| !c.is_empty());

    let (entrypoint, cmd): (&[String], &[String]) = match container.entry_point.as_deref() {
        Some(ep) if !ep.is_empty() => (ep, command.unwrap_or_default()),
        Some(_) => (&[], command.or(image_cmd).unwrap_or_default()),
        None => (
            image_entrypoint.unwrap_or_default(),
            command.or(image_cmd).unwrap_or_default(),
        ),
    };
    let args: Vec<String> = entrypoint.iter().chain(cmd).cloned().collect();
    if args.is_empty() {
        return Err(SpecError::NoCommand {
            container: container.name.clone(),
            image: container.image.clone(),
        });
    }
    Ok(args)
}

/// An ordered environment where setting an existing name replaces its value in place
/// (Docker's `ReplaceOrAppendEnvValues`).
#[derive(Debug, Default)]
struct Env {
    entries: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl Env {
    fn set(&mut self, name: &str, value: &str) {
        match self.index.get(name) {
            Some(&i) => {
                if let Some(entry) = self.entries.get_mut(i) {
                    entry.1 = value.to_owned();
                }
            }
            None => {
                self.index.insert(name.to_owned(), self.entries.len());
                self.entries.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    fn into_strings(self) -> Vec<String> {
        self.entries
            .into_iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect()
    }
}

fn valid_env_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['=', '\0'])
}

/// The process environment, built as Docker builds it (`CreateDaemonEnvironment`):
/// `PATH` (the default), `HOSTNAME` (when the definition sets a hostname) and, with a terminal,
/// `TERM=xterm` first, then the
/// image's Env, then the definition's environment, each later one replacing an earlier value
/// of the same name in place and appending new names. The definition's environment is a
/// sorted map, so the names it adds are appended in name order.
///
/// runc refuses entries without `=`, with an empty name or with a NUL byte, so those are
/// rejected here with the variable named.
pub(super) fn env(
    container: &ContainerSpec,
    image: Option<&ImageConfig>,
) -> Result<Vec<String>, SpecError> {
    let mut env = Env::default();
    env.set("PATH", DEFAULT_PATH);
    if let Some(hostname) = &container.hostname {
        env.set("HOSTNAME", hostname);
    }
    if container.terminal {
        env.set("TERM", "xterm");
    }

    for entry in image.and_then(|c| c.env().as_deref()).unwrap_or_default() {
        match entry.split_once('=') {
            Some((name, value)) if valid_env_name(name) && !value.contains('\0') => {
                env.set(name, value);
            }
            _ => {
                return Err(SpecError::InvalidImageEnv {
                    container: container.name.clone(),
                    image: container.image.clone(),
                    entry: entry.clone(),
                });
            }
        }
    }

    for (name, value) in &container.environment {
        if !valid_env_name(name) {
            return Err(SpecError::InvalidEnvName {
                container: container.name.clone(),
                name: name.clone(),
            });
        }
        if value.contains('\0') {
            return Err(SpecError::InvalidEnvValue {
                container: container.name.clone(),
                name: name.clone(),
            });
        }
        env.set(name, value);
    }
    Ok(env.into_strings())
}

/// The working directory: the definition's, else the image's WorkingDir, else `/`. An empty
/// string counts as unset. It must be absolute and is cleaned lexically (`/app/./x/..` is
/// `/app`), as Docker does.
pub(super) fn cwd(
    container: &ContainerSpec,
    image: Option<&ImageConfig>,
) -> Result<PathBuf, SpecError> {
    let dir = container
        .working_directory
        .as_deref()
        .filter(|d| !d.is_empty())
        .or_else(|| {
            image
                .and_then(|c| c.working_dir().as_deref())
                .filter(|d| !d.is_empty())
        })
        .unwrap_or("/");
    let path = Path::new(dir);
    if !path.is_absolute() {
        return Err(SpecError::RelativeWorkingDirectory {
            container: container.name.clone(),
            dir: dir.to_owned(),
        });
    }
    let mut clean = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::ParentDir => {
                clean.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(clean)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::Config as ImageConfig;
    use std::collections::BTreeMap;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn container() -> ContainerSpec {
        ContainerSpec {
            name: "web".into(),
            image: "example.com/app:1".into(),
            ..ContainerSpec::default()
        }
    }

    fn image(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> ImageConfig {
        let mut config = ImageConfig::default();
        config.set_entrypoint(entrypoint.map(strings));
        config.set_cmd(cmd.map(strings));
        config
    }

    #[test]
    fn args_merge_table() {
        type Row<'a> = (
            Option<&'a [&'a str]>, // image Entrypoint
            Option<&'a [&'a str]>, // image Cmd
            Option<&'a [&'a str]>, // definition entryPoint
            Option<&'a [&'a str]>, // definition command
            &'a [&'a str],         // expected args
        );
        let rows: &[Row] = &[
            // image entrypoint and cmd
            (
                Some(&["/ep"]),
                Some(&["a", "b"]),
                None,
                None,
                &["/ep", "a", "b"],
            ),
            // image cmd only
            (
                None,
                Some(&["/bin/sh", "-c", "x"]),
                None,
                None,
                &["/bin/sh", "-c", "x"],
            ),
            // image entrypoint only
            (Some(&["/ep", "-v"]), None, None, None, &["/ep", "-v"]),
            // override entrypoint only: image cmd dropped
            (
                Some(&["/ep"]),
                Some(&["a"]),
                Some(&["/mine"]),
                None,
                &["/mine"],
            ),
            // override command only: image entrypoint kept, cmd replaced
            (
                Some(&["/ep"]),
                Some(&["a"]),
                None,
                Some(&["x", "y"]),
                &["/ep", "x", "y"],
            ),
            // both overridden
            (
                Some(&["/ep"]),
                Some(&["a"]),
                Some(&["/mine"]),
                Some(&["x"]),
                &["/mine", "x"],
            ),
            // empty command counts as unset
            (Some(&["/ep"]), Some(&["a"]), None, Some(&[]), &["/ep", "a"]),
            // empty entrypoint removes the image's entrypoint but keeps its cmd
            (Some(&["/ep"]), Some(&["a"]), Some(&[]), None, &["a"]),
            // empty entrypoint with a command
            (
                Some(&["/ep"]),
                Some(&["a"]),
                Some(&[]),
                Some(&["x"]),
                &["x"],
            ),
        ];
        for (i, (img_ep, img_cmd, ep, cmd, want)) in rows.iter().enumerate() {
            let mut c = container();
            c.entry_point = ep.map(strings);
            c.command = cmd.map(strings);
            let img = image(*img_ep, *img_cmd);
            let got = args(&c, Some(&img)).expect("args");
            assert_eq!(got, strings(want), "row {i}");
        }
    }

    #[test]
    fn args_empty_is_an_error_naming_container_and_image() {
        let c = container();
        for img in [
            None,
            Some(image(None, None)),
            Some(image(Some(&[]), Some(&[]))),
        ] {
            let err = args(&c, img.as_ref()).expect_err("no command");
            assert_eq!(
                err,
                SpecError::NoCommand {
                    container: "web".into(),
                    image: "example.com/app:1".into()
                }
            );
            let msg = err.to_string();
            assert!(
                msg.contains("web") && msg.contains("example.com/app:1"),
                "{msg}"
            );
        }
        // an entrypoint override drops the image cmd, leaving nothing
        let mut c = container();
        c.entry_point = Some(vec![]);
        let img = image(Some(&["/ep"]), None);
        assert!(args(&c, Some(&img)).is_err());
    }

    #[test]
    fn env_override_in_place_and_append_sorted() {
        let mut c = container();
        c.environment = BTreeMap::from([
            ("ZED".to_owned(), "z".to_owned()),
            ("B".to_owned(), "new".to_owned()),
            ("ALPHA".to_owned(), "a".to_owned()),
        ]);
        let mut img = ImageConfig::default();
        img.set_env(Some(strings(&["PATH=/opt/bin:/bin", "B=old", "C=c=d"])));
        let got = env(&c, Some(&img)).expect("env");
        assert_eq!(
            got,
            strings(&["PATH=/opt/bin:/bin", "B=new", "C=c=d", "ALPHA=a", "ZED=z"])
        );
    }

    #[test]
    fn env_default_path_and_hostname() {
        let mut c = container();
        let got = env(&c, None).expect("env");
        assert_eq!(got, vec![format!("PATH={DEFAULT_PATH}")]);

        c.hostname = Some("web-1".into());
        c.environment = BTreeMap::from([("X".to_owned(), "1".to_owned())]);
        let got = env(&c, None).expect("env");
        assert_eq!(
            got,
            vec![
                format!("PATH={DEFAULT_PATH}"),
                "HOSTNAME=web-1".into(),
                "X=1".into()
            ]
        );

        // the definition's PATH and HOSTNAME win
        c.environment = BTreeMap::from([
            ("PATH".to_owned(), "/mine".to_owned()),
            ("HOSTNAME".to_owned(), "other".to_owned()),
        ]);
        let got = env(&c, None).expect("env");
        assert_eq!(got, strings(&["PATH=/mine", "HOSTNAME=other"]));
    }

    #[test]
    fn env_image_duplicates_keep_last_value() {
        let c = container();
        let mut img = ImageConfig::default();
        img.set_env(Some(strings(&["A=1", "A=2", "EMPTY="])));
        let got = env(&c, Some(&img)).expect("env");
        assert_eq!(
            got,
            vec![
                format!("PATH={DEFAULT_PATH}"),
                "A=2".into(),
                "EMPTY=".into()
            ]
        );
    }

    #[test]
    fn env_invalid_names_are_errors() {
        for bad in ["", "A=B", "A\0"] {
            let mut c = container();
            c.environment = BTreeMap::from([(bad.to_owned(), "v".to_owned())]);
            let err = env(&c, None).expect_err("invalid name");
            assert_eq!(
                err,
                SpecError::InvalidEnvName {
                    container: "web".into(),
                    name: bad.into()
                }
            );
        }
        let mut c = container();
        c.environment = BTreeMap::from([("A".to_owned(), "x\0y".to_owned())]);
        assert!(matches!(
            env(&c, None),
            Err(SpecError::InvalidEnvValue { name, .. }) if name == "A"
        ));
        for bad in ["NOEQUALS", "=value"] {
            let mut img = ImageConfig::default();
            img.set_env(Some(strings(&[bad])));
            let err = env(&container(), Some(&img)).expect_err("invalid image env");
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn cwd_precedence_default_and_cleaning() {
        let mut c = container();
        assert_eq!(cwd(&c, None).expect("cwd"), PathBuf::from("/"));

        let mut img = ImageConfig::default();
        img.set_working_dir(Some("/srv".into()));
        assert_eq!(cwd(&c, Some(&img)).expect("cwd"), PathBuf::from("/srv"));

        c.working_directory = Some("/app/./data//x/..".into());
        assert_eq!(
            cwd(&c, Some(&img)).expect("cwd"),
            PathBuf::from("/app/data")
        );

        c.working_directory = Some(String::new());
        assert_eq!(cwd(&c, Some(&img)).expect("cwd"), PathBuf::from("/srv"));
    }

    #[test]
    fn cwd_relative_is_an_error() {
        let mut c = container();
        c.working_directory = Some("app".into());
        assert_eq!(
            cwd(&c, None),
            Err(SpecError::RelativeWorkingDirectory {
                container: "web".into(),
                dir: "app".into()
            })
        );
        let c = container();
        let mut img = ImageConfig::default();
        img.set_working_dir(Some("rel/dir".into()));
        assert!(cwd(&c, Some(&img)).is_err());
    }
}
