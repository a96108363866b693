//! Injection-proof output: a hostile value in any field that reaches a unit
//! is either rejected with a clear error naming its key path, or comes out
//! of systemd's own parser (`systemd --test`) exactly as written.

mod common;

use std::collections::BTreeMap;

use common::*;

fn values() -> Vec<(&'static str, String)> {
    let fixed: &[(&str, &str)] = &[
        ("lf", "a\nb"),
        ("cr", "a\rb"),
        ("nul", "a\0b"),
        ("percent", "100%"),
        ("double-percent", "%%"),
        ("specifier", "%n-%H"),
        ("dollar", "$HOME"),
        ("double-dollar", "$$"),
        ("brace", "${PATH}x"),
        ("dquote", "say \"hi\""),
        ("squote", "'"),
        ("both-quotes", "it's \"x\""),
        ("trailing-backslash", "trail\\"),
        ("backslash-n", "a\\nb"),
        ("semicolon", ";"),
        ("semicolon-in", "a;b"),
        ("tab", "a\tb"),
        ("spaces", "  two  spaces  "),
        ("section", "[Service]"),
        ("directive", "x ExecStart=/bin/evil"),
        ("comment", "#not a comment"),
        ("unicode", "ünïcødé ✓"),
        ("dash", "--privileged"),
        ("empty", ""),
    ];
    let mut v: Vec<_> = fixed.iter().map(|(n, s)| (*n, s.to_string())).collect();
    v.push(("huge", huge()));
    v
}

/// A 10,000-byte value.
fn huge() -> String {
    "x".repeat(10_000)
}

/// Where a value goes, and how to read it back from systemd's parse.
struct Field {
    name: &'static str,
    /// The key path the error must name (`{job}` is the job name).
    path: &'static str,
    /// The job's YAML, `V` standing for the JSON-quoted value.
    job: &'static str,
    target: &'static str,
    /// How the value is embedded in the field (a volume needs `HOST:INSIDE`).
    wrap: fn(&str) -> String,
    read: fn(&ParsedUnit) -> Option<String>,
}

fn same(v: &str) -> String {
    v.to_owned()
}

/// A path as systemd keeps it after `path_simplify()`: repeated slashes
/// as one, no trailing slash. Equivalent to what was written; the tests
/// compare escaping, not systemd's tidying.
fn simplified(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    if out.len() > 1 && out.ends_with('/') {
        out.pop();
    }
    out
}

fn argv(u: &ParsedUnit) -> &[String] {
    &u.commands
        .iter()
        .find(|(s, _)| s == "ExecStart")
        .expect("ExecStart")
        .1
}

fn after(u: &ParsedUnit, flag: &str) -> Option<String> {
    let a = argv(u);
    a.iter().position(|w| w == flag).map(|i| a[i + 1].clone())
}

fn step(u: &ParsedUnit) -> serde_json::Value {
    serde_json::from_str(&after(u, "--step").expect("--step")).expect("step JSON")
}

const IMAGE: &str = "image: registry.example.com/runner:1";

fn fields() -> Vec<Field> {
    vec![
        Field {
            name: "description",
            path: "jobs.{job}.description",
            job: "description: V\n    command: [/usr/bin/true]",
            target: "systemd",
            wrap: same,
            read: |u| Some(u.description.clone()),
        },
        Field {
            name: "host-arg",
            path: "jobs.{job}.command[1]",
            job: "command: [/usr/bin/true, V]",
            target: "systemd",
            wrap: same,
            read: |u| argv(u).get(1).cloned(),
        },
        Field {
            name: "host-env",
            path: "jobs.{job}.environment.HOSTILE",
            job: "environment: { HOSTILE: V }\n    command: [/usr/bin/true]",
            target: "systemd",
            wrap: same,
            read: |u| {
                u.environment
                    .iter()
                    .find_map(|e| e.strip_prefix("HOSTILE=").map(str::to_owned))
            },
        },
        Field {
            name: "container-env",
            path: "jobs.{job}.environment.HOSTILE",
            job: "environment: { HOSTILE: V }\n    container: { IMAGE, command: [/bin/x] }",
            target: "systemd",
            wrap: same,
            read: |u| after(u, "--env").and_then(|e| e.strip_prefix("HOSTILE=").map(str::to_owned)),
        },
        Field {
            name: "container-arg",
            path: "jobs.{job}.container.command[1]",
            job: "container: { IMAGE, command: [/bin/x, V] }",
            target: "systemd",
            wrap: same,
            read: |u| argv(u).last().cloned(),
        },
        Field {
            name: "volume",
            path: "jobs.{job}.container.volumes[0]",
            job: "container: { IMAGE, volumes: [V], command: [/bin/x] }",
            target: "systemd",
            wrap: |v| format!("/srv/{v}:/data"),
            read: |u| after(u, "--volume"),
        },
        Field {
            name: "image",
            path: "jobs.{job}.container.image",
            job: "container: { image: V, command: [/bin/x] }",
            target: "systemd",
            wrap: same,
            read: |u| argv(u).get(argv(u).len() - 2).cloned(),
        },
        Field {
            name: "rpc-param",
            path: "jobs.{job}.steps[0].rpc.params[0]",
            job: "container: { IMAGE }\n    steps: [ { rpc: { url: http://x/, method: backupwallet, params: [V] } } ]",
            target: "systemd",
            wrap: same,
            read: |u| step(u)["rpc"]["params"][0].as_str().map(str::to_owned),
        },
        Field {
            name: "rpc-wallet",
            path: "jobs.{job}.steps[0].rpc.wallet",
            job: "container: { IMAGE }\n    steps: [ { rpc: { url: http://x/, method: backupwallet, wallet: V } } ]",
            target: "systemd",
            wrap: same,
            read: |u| step(u)["rpc"]["wallet"].as_str().map(str::to_owned),
        },
        Field {
            name: "snapshot-tag",
            path: "jobs.{job}.steps[0].ebs_snapshot.tags.t",
            job: "container: { IMAGE }\n    steps: [ { ebs_snapshot: { volume_id: vol-0123456789abcdef0, region: us-east-1, credentials: default_chain, tags: { t: V } } } ]",
            target: "systemd",
            wrap: same,
            read: |u| {
                step(u)["ebs_snapshot"]["tags"]["t"]
                    .as_str()
                    .map(str::to_owned)
            },
        },
        Field {
            name: "copy-source",
            path: "jobs.{job}.steps[0].copy.source",
            job: "container: { IMAGE, volumes: [\"/data:/data:ro\", \"/b:/b\"] }\n    steps: [ { copy: { source: V, destination: /b } } ]",
            target: "systemd",
            wrap: |v| format!("/data/{v}"),
            read: |u| step(u)["copy"]["source"].as_str().map(str::to_owned),
        },
        Field {
            name: "s3-prefix",
            path: "jobs.{job}.steps[0].s3_sync.prefix",
            job: "container: { IMAGE, volumes: [/srv:/backups] }\n    steps: [ { s3_sync: { source: /backups, bucket: bkt, prefix: V, region: us-east-1, credentials: default_chain } } ]",
            target: "systemd",
            wrap: |v| format!("host1/{v}/"),
            read: |u| step(u)["s3_sync"]["prefix"].as_str().map(str::to_owned),
        },
        Field {
            name: "metadata",
            path: "jobs.{job}.fleet.machine_metadata.k",
            job: "fleet: { machine_metadata: { k: V } }\n    container: { IMAGE, command: [/bin/x] }",
            target: "fleet",
            wrap: same,
            read: |_| None,
        },
        Field {
            name: "svc-user",
            path: "jobs.{job}.service.user",
            job: "command: [/usr/bin/true]\n    service: { user: V }",
            target: "systemd",
            wrap: same,
            read: |u| u.setting("User").map(str::to_owned),
        },
        Field {
            name: "svc-group",
            path: "jobs.{job}.service.group",
            job: "command: [/usr/bin/true]\n    service: { group: V }",
            target: "systemd",
            wrap: same,
            read: |u| u.setting("Group").map(str::to_owned),
        },
        Field {
            name: "svc-workdir",
            path: "jobs.{job}.service.working_directory",
            job: "command: [/usr/bin/true]\n    service: { working_directory: V }",
            target: "systemd",
            wrap: |v| format!("/srv/{v}"),
            read: |u| u.setting("WorkingDirectory").map(str::to_owned),
        },
        Field {
            name: "svc-envfile",
            path: "jobs.{job}.service.environment_files[0]",
            job: "command: [/usr/bin/true]\n    service: { environment_files: [V] }",
            target: "systemd",
            wrap: |v| format!("-/etc/{v}"),
            read: |u| u.setting("EnvironmentFile").map(str::to_owned),
        },
        Field {
            name: "svc-rw-path",
            path: "jobs.{job}.service.read_write_paths[0]",
            job: "command: [/usr/bin/true]\n    service: { read_write_paths: [V] }",
            target: "systemd",
            wrap: |v| format!("/srv/{v}"),
            read: |u| u.setting("ReadWritePaths").map(str::to_owned),
        },
        Field {
            name: "svc-ro-path",
            path: "jobs.{job}.service.read_only_paths[0]",
            job: "command: [/usr/bin/true]\n    service: { read_only_paths: [V] }",
            target: "fleet",
            wrap: |v| format!("/srv/{v}"),
            read: |u| u.setting("ReadOnlyPaths").map(str::to_owned),
        },
        Field {
            name: "after",
            path: "jobs.{job}.after[0]",
            job: "after: [V]\n    command: [/usr/bin/true]",
            target: "systemd",
            wrap: same,
            read: |_| None,
        },
    ]
}

fn spec(jobs: &[(String, String, &str)]) -> String {
    let mut s = String::from("version: 1\njobs:\n");
    for (name, body, target) in jobs {
        s.push_str(&format!(
            "  {name}:\n    schedule: daily\n    target: {target}\n    {body}\n"
        ));
    }
    s
}

#[test]
fn hostile_values_are_rejected_or_survive_systemd_parsing() {
    let tmp = world_readable_tempdir();
    let mut accepted: Vec<(String, String, &str)> = Vec::new();
    let mut expect: BTreeMap<String, (&Field, String)> = BTreeMap::new();
    let fields = fields();
    for field in &fields {
        for (vname, raw) in values() {
            let job = format!("{}-{vname}", field.name);
            let value = (field.wrap)(&raw);
            let quoted = serde_json::to_string(&value).unwrap();
            let body = field.job.replace("IMAGE", IMAGE).replace('V', &quoted);
            // `V` only appears as the placeholder in these templates.
            let one = [(job.clone(), body.clone(), field.target)];
            let path = tmp.path().join(format!("{job}.yaml"));
            write(&path, &spec(&one));
            let r = run(unitgen().arg("validate").arg("-f").arg(&path));
            match r.status {
                0 => {
                    assert!(
                        !["lf", "cr", "nul"].contains(&vname),
                        "{job}: a line break or NUL was accepted"
                    );
                    accepted.push(one.into_iter().next().unwrap());
                    expect.insert(job, (field, value));
                }
                2 => {
                    let want = field.path.replace("{job}", &job);
                    assert!(
                        r.stderr.lines().all(|l| l.starts_with("error: "))
                            && r.stderr.contains(&want),
                        "{job}: the error should name `{want}`:\n{}",
                        r.stderr
                    );
                    assert!(
                        r.stderr.len() < 2000,
                        "{job}: error too long to read:\n{}",
                        r.stderr
                    );
                }
                other => panic!("{job}: exit {other}\n{}", r.stderr),
            }
        }
    }
    assert!(
        accepted.len() > 60,
        "too few hostile values were accepted to prove anything"
    );

    // One render of every accepted value, parsed once by systemd.
    let spec_path = tmp.path().join("all.yaml");
    write(&spec_path, &spec(&accepted));
    let out = tmp.path().join("units");
    let r = run(unitgen()
        .arg("render")
        .arg("-f")
        .arg(&spec_path)
        .arg("-o")
        .arg(&out));
    assert_eq!(r.status, 0, "{}", r.stderr);
    let mut wants = String::from("[Unit]\nDescription=all hostile units\n");
    for (job, _, _) in &accepted {
        wants.push_str(&format!("Wants={job}.service {job}.timer\n"));
    }
    write(&out.join("hostile-all.target"), &wants);
    let parsed = systemd_dump(&out, "hostile-all.target");

    let mut checked = 0;
    for (job, (field, value)) in &expect {
        let unit = parsed
            .get(&format!("{job}.service"))
            .unwrap_or_else(|| panic!("systemd did not load {job}.service"));
        assert!(
            unit.commands.iter().any(|(s, _)| s == "ExecStart"),
            "{job}: no ExecStart"
        );
        if let Some(got) = (field.read)(unit) {
            // systemd tidies the paths of `service:` (see `simplified`).
            let want = match field.name.starts_with("svc-") {
                true => simplified(value),
                false => value.clone(),
            };
            assert_eq!(
                got, want,
                "{job}: systemd parsed something else than the spec's value"
            );
            checked += 1;
        }
        let timer = parsed.get(&format!("{job}.timer"));
        assert!(timer.is_some(), "systemd did not load {job}.timer");
    }
    assert!(
        checked > 50,
        "only {checked} values were compared with systemd's parse"
    );
}

#[test]
fn line_breaks_are_rejected_with_their_name() {
    let tmp = tempfile::tempdir().unwrap();
    for (value, what) in [
        ("a\nb", "line feed"),
        ("a\rb", "carriage return"),
        ("a\0b", "NUL"),
    ] {
        let path = tmp.path().join("s.yaml");
        let quoted = serde_json::to_string(value).unwrap();
        write(
            &path,
            &format!(
                "version: 1\njobs:\n  j:\n    schedule: daily\n    command: [/usr/bin/true, {quoted}]\n"
            ),
        );
        let r = run(unitgen().arg("validate").arg("-f").arg(&path));
        assert_eq!(r.status, 2);
        assert!(r.stderr.contains(what), "{}", r.stderr);
    }
}

#[test]
fn huge_values_are_fine_on_systemd_but_refused_for_fleet() {
    let tmp = tempfile::tempdir().unwrap();
    for (target, status) in [("systemd", 0), ("fleet", 2)] {
        let path = tmp.path().join("s.yaml");
        write(
            &path,
            &format!(
                "version: 1\njobs:\n  j:\n    schedule: daily\n    target: {target}\n    command: [/usr/bin/true, {}]\n",
                huge()
            ),
        );
        let r = run(unitgen().arg("validate").arg("-f").arg(&path));
        assert_eq!(r.status, status, "{target}: {}", r.stderr);
        if status == 2 {
            assert_eq!(
                r.stderr.trim_end(),
                format!(
                    "error: {}:3:3: jobs.j: line 6 of j.service would be 10024 bytes, but fleet rejects lines of 2048 bytes or more; shorten the values on it, or use `target: systemd`",
                    path.display()
                )
            );
        }
    }
}

#[test]
fn hostile_job_names_are_rejected_or_become_exactly_that_unit() {
    let tmp = tempfile::tempdir().unwrap();
    let names = [
        "a\nb",
        "a\rb",
        "a\0b",
        "100%",
        "$HOME",
        "a\"b",
        "it's",
        "trail\\",
        ";",
        "a b",
        "../up",
        "x/y",
        ".hidden",
        "-opt",
        "@inst",
        "a@b@c",
        "tmpl@",
        "ünï",
        "a@b",
        "ok:name_1.2-3",
    ];
    let mut accepted = 0;
    for name in names {
        let quoted = serde_json::to_string(name).unwrap();
        let spec = tmp.path().join("s.yaml");
        write(
            &spec,
            &format!(
                "version: 1\njobs:\n  {quoted}:\n    schedule: daily\n    command: [/usr/bin/true]\n"
            ),
        );
        let out = tmp.path().join("units");
        let _ = std::fs::remove_dir_all(&out);
        let r = run(unitgen()
            .arg("render")
            .arg("-f")
            .arg(&spec)
            .arg("-o")
            .arg(&out));
        match r.status {
            0 => {
                accepted += 1;
                let files: Vec<_> = read_tree(&out).into_keys().collect();
                let want = [
                    ".unitgen-manifest".to_owned(),
                    format!("{name}.service"),
                    format!("{name}.timer"),
                ];
                let got: Vec<_> = files
                    .iter()
                    .map(|p| p.to_str().unwrap().to_owned())
                    .collect();
                assert_eq!(got, want, "{name:?}");
            }
            2 => {
                assert!(
                    r.stderr.starts_with("error: ") && r.stderr.contains("cannot be a unit name"),
                    "{name:?}: {}",
                    r.stderr
                );
                assert!(!out.exists(), "{name:?}: nothing may be written");
            }
            s => panic!("{name:?}: exit {s}: {}", r.stderr),
        }
    }
    assert_eq!(
        accepted, 2,
        "only `a@b` and `ok:name_1.2-3` are valid unit names here"
    );
}

/// A notify field: which unit carries it, and how to read it back.
struct NotifyField {
    name: &'static str,
    path: &'static str,
    job: &'static str,
    wrap: fn(&str) -> String,
    /// The unit to read (`{job}` is the job name).
    unit: &'static str,
    read: fn(&ParsedUnit) -> Option<String>,
}

/// The `--notify` JSON of the first `setting` command that has one.
fn notify_json(u: &ParsedUnit, setting: &str) -> Option<serde_json::Value> {
    u.commands
        .iter()
        .filter(|(s, _)| s == setting)
        .find_map(|(_, a)| {
            let i = a.iter().position(|w| w == "--notify")?;
            serde_json::from_str(&a[i + 1]).ok()
        })
}

fn notify_fields() -> Vec<NotifyField> {
    vec![
        NotifyField {
            name: "n-mail-to",
            path: "jobs.{job}.notify.mail.to[0]",
            job: "container: { IMAGE, command: [/bin/x] }\n    notify: { mail: { to: [V], smtp: \"smtp://10.0.0.1\" } }",
            wrap: same,
            unit: "unitgen-notify@{job}.service",
            read: |u| {
                notify_json(u, "ExecStart")?["mail"]["to"][0]
                    .as_str()
                    .map(str::to_owned)
            },
        },
        NotifyField {
            name: "n-mail-from",
            path: "jobs.{job}.notify.mail.from",
            job: "container: { IMAGE, command: [/bin/x] }\n    notify: { mail: { to: [a@b.c], from: V, smtp: \"smtp://10.0.0.1\" } }",
            wrap: |v| format!("{v}@example.com"),
            unit: "unitgen-notify@{job}.service",
            read: |u| {
                notify_json(u, "ExecStart")?["mail"]["from"]
                    .as_str()
                    .map(str::to_owned)
            },
        },
        NotifyField {
            name: "n-smtp",
            path: "jobs.{job}.notify.mail.smtp",
            job: "container: { IMAGE, command: [/bin/x] }\n    notify: { mail: { to: [a@b.c], smtp: V } }",
            wrap: |v| format!("smtp://{v}"),
            unit: "unitgen-notify@{job}.service",
            read: |u| {
                notify_json(u, "ExecStart")?["mail"]["smtp"]
                    .as_str()
                    .map(str::to_owned)
            },
        },
        NotifyField {
            name: "n-webhook",
            path: "jobs.{job}.notify.webhook",
            job: "container: { IMAGE, command: [/bin/x] }\n    notify: { webhook: V }",
            wrap: |v| format!("http://10.0.0.1/{v}"),
            unit: "unitgen-notify@{job}.service",
            read: |u| {
                notify_json(u, "ExecStart")?["webhook"]["url"]
                    .as_str()
                    .map(str::to_owned)
            },
        },
        NotifyField {
            name: "n-ping",
            path: "jobs.{job}.notify.healthchecks.url",
            job: "container: { IMAGE, command: [/bin/x] }\n    notify: { healthchecks: { url: V } }",
            wrap: |v| format!("https://hc-ping.com/{v}"),
            unit: "{job}.service",
            read: |u| {
                notify_json(u, "ExecStartPre")?["healthchecks"]["url"]
                    .as_str()
                    .map(str::to_owned)
            },
        },
        NotifyField {
            name: "n-network",
            path: "jobs.{job}.notify.network",
            job: "container: { IMAGE, command: [/bin/x] }\n    notify: { network: V, webhook: \"http://10.0.0.1/x\" }",
            wrap: same,
            unit: "unitgen-notify@{job}.service",
            read: |u| {
                let a = &u.commands.iter().find(|(s, _)| s == "ExecStart")?.1;
                a.iter()
                    .position(|w| w == "--network")
                    .map(|i| a[i + 1].clone())
            },
        },
    ]
}

#[test]
fn hostile_notify_values_are_rejected_or_survive_systemd_parsing() {
    let tmp = world_readable_tempdir();
    let mut accepted: Vec<(String, String, &str)> = Vec::new();
    let mut expect: Vec<(String, &NotifyField, String)> = Vec::new();
    let fields = notify_fields();
    for field in &fields {
        for (vname, raw) in values() {
            // Job names with `@` get no notify unit; these are plain.
            let job = format!("{}-{vname}", field.name);
            let value = (field.wrap)(&raw);
            let quoted = serde_json::to_string(&value).unwrap();
            let body = field.job.replace("IMAGE", IMAGE).replace('V', &quoted);
            let one = [(job.clone(), body, "systemd")];
            let path = tmp.path().join(format!("{job}.yaml"));
            write(&path, &spec(&one));
            let r = run(unitgen().arg("validate").arg("-f").arg(&path));
            match r.status {
                0 => {
                    assert!(
                        !["lf", "cr", "nul"].contains(&vname),
                        "{job}: a line break or NUL was accepted"
                    );
                    accepted.push(one.into_iter().next().unwrap());
                    expect.push((job, field, value));
                }
                2 => {
                    let want = field.path.replace("{job}", &job);
                    assert!(
                        r.stderr.lines().all(|l| l.starts_with("error: "))
                            && r.stderr.contains(&want),
                        "{job}: the error should name `{want}`:\n{}",
                        r.stderr
                    );
                }
                other => panic!("{job}: exit {other}\n{}", r.stderr),
            }
        }
    }
    // URLs keep `%`, `$`, quotes and backslashes; addresses and names refuse them.
    assert!(
        accepted.len() > 25,
        "too few hostile notify values were accepted to prove anything: {}",
        accepted.len()
    );
    let spec_path = tmp.path().join("all.yaml");
    write(&spec_path, &spec(&accepted));
    let out = tmp.path().join("units");
    let r = run(unitgen()
        .arg("render")
        .arg("-f")
        .arg(&spec_path)
        .arg("-o")
        .arg(&out));
    assert_eq!(r.status, 0, "{}", r.stderr);
    let mut wants = String::from("[Unit]\nDescription=all hostile notify units\n");
    for (job, _, _) in &accepted {
        wants.push_str(&format!("Wants={job}.service\n"));
        if out.join(format!("unitgen-notify@{job}.service")).exists() {
            wants.push_str(&format!("Wants=unitgen-notify@{job}.service\n"));
        }
    }
    write(&out.join("hostile-notify.target"), &wants);
    let parsed = systemd_dump(&out, "hostile-notify.target");
    for (job, field, value) in &expect {
        let name = field.unit.replace("{job}", job);
        let unit = parsed
            .get(&name)
            .unwrap_or_else(|| panic!("systemd did not load {name}"));
        let got = (field.read)(unit).unwrap_or_else(|| panic!("{job}: nothing to read in {name}"));
        assert_eq!(
            &got, value,
            "{job}: systemd parsed something else than the spec's value"
        );
    }
    // The notify unit's script reaches `sh` exactly as written: `$1`,
    // `$unit` and `$@` for the shell, not expanded by systemd.
    let (_, argv) = parsed["unitgen-notify@n-webhook-percent.service"]
        .commands
        .iter()
        .find(|(s, _)| s == "ExecStart")
        .unwrap();
    assert_eq!(argv[0..2], ["/bin/sh", "-c"]);
    assert!(
        argv[2].starts_with("unit=$1; shift; { systemctl show "),
        "{}",
        argv[2]
    );
    assert!(argv[2].ends_with("| exec \"$@\""), "{}", argv[2]);
    assert_eq!(argv[3..5], ["unitgen-notify", "n-webhook-percent.service"]);
}
