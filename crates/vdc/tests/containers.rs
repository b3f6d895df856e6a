//! Containers end to end: an image built here with umoci from a static
//! busybox (there is no public registry to pull from), run from its OCI
//! layout and from a real registry (Debian's docker-registry) it was
//! pushed to with skopeo; served through a gateway, confined like a
//! process (its own root, the image's user, no view of the host), its
//! writable layer new at each start and its volumes kept. Run as root (CI
//! does; it installs umoci, skopeo, docker-registry and busybox-static).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

fn write_spec(vdc: &Vdc, name: &str, body: &str) -> PathBuf {
    let path = vdc.dir.path().join(format!("{name}.toml"));
    std::fs::write(&path, body).unwrap();
    path
}

fn wait_for_file(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if text.contains("done") {
                return text;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} never written",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "run as root (CI does): containers are confined like processes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_from_an_oci_layout_serves_confined_as_its_images_user() {
    root();
    let vdc = Vdc::start();
    build_image(vdc.dir.path());
    let port = free_port();
    let spec = write_spec(
        &vdc,
        "web",
        &format!(
            r#"app = "web"
[components.web]
appliance = "container"
image = "oci:images:web"
args = ["-f", "-p", "${{PORT}}", "-h", "/srv/www"]
inputs.http = {{ protocol = "http", health = "/index.html" }}
gateway = {{ port = {port} }}

[components.probe]
appliance = "container"
image = "oci:images:web"
command = ["sh", "-c", "ls / > /data/ls; id > /data/id; echo $GREETING $MODE > /data/env; pwd > /data/pwd; touch /srv/written && echo written >> /data/id; cat /proc/1/cmdline | wc -c >> /data/id; echo done >> /data/id; sleep 1000"]
env = {{ MODE = "from-spec" }}
volumes.data = {{ mount = "/data" }}
"#
        ),
    );
    vdc.ok(&["up", "-d", spec.to_str().unwrap()]);
    let body = http()
        .get(format!("http://127.0.0.1:{port}/index.html"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "served from the image\n");

    let ps = vdc.instances("web");
    for i in &ps {
        assert_eq!(i["isolation"]["network"], "own", "{i}");
        assert_eq!(i["isolation"]["filesystem_view"], true, "{i}");
        assert_eq!(
            i["isolation"]["unprivileged"], true,
            "the image's user app: {i}"
        );
    }
    // What the container sees: its image, its volume, not the host.
    let volume = vdc.data_dir().join("volumes/default/web/probe-0/data");
    let id = wait_for_file(&volume.join("id"));
    assert!(id.starts_with("uid=1000(app) gid=1000(app)"), "{id}");
    assert!(
        id.contains("written"),
        "the image's /srv is the app's: {id}"
    );
    let top = std::fs::read_to_string(volume.join("ls")).unwrap();
    let top: Vec<&str> = top.lines().collect();
    for present in ["bin", "etc", "srv", "data", "proc", "dev", "sys", "tmp"] {
        assert!(top.contains(&present), "/{present} missing: {top:?}");
    }
    for absent in ["usr", "home", "root", "var", "lib"] {
        assert!(
            !top.contains(&absent),
            "/{absent} of the host is visible: {top:?}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(volume.join("env")).unwrap(),
        "from-image from-spec\n",
        "the spec's env over the image's"
    );
    assert_eq!(
        std::fs::read_to_string(volume.join("pwd")).unwrap(),
        "/srv\n"
    );

    // Killed, it comes back with a fresh writable layer and its volume.
    let upper = vdc
        .data_dir()
        .join("containers/default/web/probe-0/upper/srv/written");
    assert!(upper.exists(), "{}", upper.display());
    std::fs::remove_file(volume.join("id")).unwrap();
    let pid = ps
        .iter()
        .find(|i| instance_name(i) == "web/probe/0")
        .and_then(|i| i["program_pid"].as_i64())
        .unwrap() as i32;
    signal(pid, Signal::SIGKILL);
    let id = wait_for_file(&volume.join("id"));
    assert!(id.contains("written"), "{id}");
    assert!(volume.join("ls").exists(), "the volume outlives the run");
    vdc.wait_instances("web", "the probe to be back", |list| {
        list.iter().any(|i| {
            instance_name(i) == "web/probe/0" && i["restarts"] == 1 && i["state"] == "ready"
        })
    });

    let images = vdc.ok(&["down", "web"]);
    assert!(images.contains("down"), "{images}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_is_pulled_from_a_registry_and_a_missing_image_says_so() {
    root();
    let vdc = Vdc::start();
    build_image(vdc.dir.path());
    let registry = vdc_testkit::registry::Registry::start(&vdc.dir.path().join("registry"));
    registry.push(
        &format!("oci:{}/images:web", vdc.dir.path().display()),
        "shop/web:1.0",
    );
    let port = free_port();
    let spec = write_spec(
        &vdc,
        "pulled",
        &format!(
            r#"app = "pulled"
[components.web]
appliance = "container"
image = "{}/shop/web:1.0"
args = ["-f", "-p", "${{PORT}}", "-h", "/srv/www"]
inputs.http = {{ protocol = "http", health = "/index.html" }}
gateway = {{ port = {port} }}
"#,
            registry.host()
        ),
    );
    vdc.ok(&["up", "-d", spec.to_str().unwrap()]);
    let body = http()
        .get(format!("http://127.0.0.1:{port}/index.html"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "served from the image\n");
    let events = vdc.ok(&["events", "pulled"]);
    assert!(events.contains("instance-ready"), "{events}");

    // An image the registry does not have: refused at submission, with
    // the registry's answer; nothing is created.
    let missing = write_spec(
        &vdc,
        "missing",
        &format!(
            r#"app = "missing"
[components.web]
appliance = "container"
image = "{}/shop/nothing:1"
"#,
            registry.host()
        ),
    );
    let out = vdc.run(&["up", "-d", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        format!(
            "error: component `web`: image {}/shop/nothing:1: the registry has no such image (manifest unknown)",
            registry.host()
        )
    );
    // A local file that is not there, or lacks the tag.
    for (image, says) in [
        ("oci-archive:nothing.tar", "nothing.tar: No such file"),
        ("oci:images:v9", "it has no image tagged `v9` (tags: web)"),
    ] {
        let spec = write_spec(
            &vdc,
            "local",
            &format!("app = \"local\"\n[components.web]\nappliance = \"container\"\nimage = \"{image}\"\n"),
        );
        let out = vdc.run(&["up", "-d", spec.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{image}: {err}");
    }
    let apps = vdc.ok(&["apps"]);
    assert!(
        !apps.contains("missing") && !apps.contains("local"),
        "{apps}"
    );
}

#[test]
fn images_are_pulled_imported_listed_kept_while_used_and_pruned() {
    root();
    let vdc = Vdc::start();
    build_image(vdc.dir.path());
    let registry = vdc_testkit::registry::Registry::start(&vdc.dir.path().join("registry"));
    registry.push(
        &format!("oci:{}/images:web", vdc.dir.path().display()),
        "shop/web:1.0",
    );
    let reference = format!("{}/shop/web:1.0", registry.host());

    // A pull shows its progress, a line per tenth without a terminal.
    let out = vdc.run(&["image", "pull", &reference]);
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/ ") && err.contains("blobs)"), "{err}");
    assert!(
        err.contains(&format!("pulled {reference} (sha256:")),
        "{err}"
    );

    let layout = format!("oci:{}/images:web", vdc.dir.path().display());
    vdc.ok(&["image", "import", &layout]);
    let list: Vec<serde_json::Value> =
        serde_json::from_str(&vdc.ok(&["image", "list", "-o", "json"])).unwrap();
    let names: Vec<&str> = list.iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&reference.as_str()) && names.contains(&layout.as_str()));
    // Both are one image: the same digest, the layers stored once.
    assert_eq!(list[0]["digest"], list[1]["digest"]);
    let layers = std::fs::read_dir(vdc.data_dir().join("images/layers"))
        .unwrap()
        .count();
    assert_eq!(layers, 1);

    let inspect = vdc.ok(&["image", "inspect", &reference]);
    assert!(
        inspect.contains("[\"/bin/httpd\"]") && inspect.contains("app"),
        "{inspect}"
    );

    // Used by an instance: kept.
    let spec = write_spec(
        &vdc,
        "held",
        &format!(
            "app = \"held\"\n[components.web]\nappliance = \"container\"\nimage = \"{reference}\"\ncommand = [\"sh\", \"-c\", \"trap '' TERM; exec httpd -f -p $PORT\"]\nstop_grace = \"8s\"\ninputs.http = {{ protocol = \"tcp\" }}\n"
        ),
    );
    vdc.ok(&["up", "-d", spec.to_str().unwrap()]);
    let out = vdc.run(&["image", "rm", &reference]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is used by held/web/0"), "{err}");
    let pruned = vdc.ok(&["image", "prune", "-o", "json"]);
    let pruned: serde_json::Value = serde_json::from_str(&pruned).unwrap();
    assert_eq!(
        pruned["removed"],
        serde_json::json!([layout]),
        "the unused one goes"
    );

    // Exported and imported again: the same image.
    let archive = vdc.dir.path().join("web.tar");
    vdc.ok(&[
        "image",
        "export",
        &reference,
        archive.to_str().unwrap(),
        "--tag",
        "v1",
    ]);
    let back = vdc.ok(&[
        "image",
        "import",
        &format!("{}:v1", archive.display()),
        "-o",
        "json",
    ]);
    assert!(back.contains(list[0]["digest"].as_str().unwrap()), "{back}");

    // A rollout to another image: the instance still stopping (it ignores
    // SIGTERM for its grace period) runs from the first, which stays in
    // use though the app names the other now.
    let rollout = write_spec(
        &vdc,
        "held",
        &format!(
            "app = \"held\"\n[components.web]\nappliance = \"container\"\nimage = \"oci-archive:{}:v1\"\ncommand = [\"/bin/nothing\"]\ninputs.http = {{ protocol = \"tcp\" }}\n",
            archive.display()
        ),
    );
    let out = vdc.run(&["up", "-d", "--timeout", "2", rollout.to_str().unwrap()]);
    assert!(!out.status.success());
    let old: Vec<serde_json::Value> = vdc
        .instances("held")
        .into_iter()
        .filter(|i| i["image"] == serde_json::json!(reference))
        .collect();
    assert_eq!(old.len(), 1, "the old one is still there: {old:#?}");
    assert_eq!(old[0]["state"], "stopping", "{old:#?}");
    let out = vdc.run(&["image", "rm", &reference]);
    assert!(!out.status.success(), "removed under a running instance");

    vdc.ok(&["down", "held"]);
    vdc.ok(&["image", "rm", &reference]);
    let out = vdc.run(&["image", "inspect", &reference]);
    assert!(!out.status.success());
}

#[test]
fn a_registry_login_is_checked_kept_private_and_used() {
    root();
    let vdc = Vdc::start();
    build_image(vdc.dir.path());
    let registry = vdc_testkit::registry::Registry::start_with_auth(
        &vdc.dir.path().join("registry"),
        "ci",
        "s3cret",
    );
    registry.push(
        &format!("oci:{}/images:web", vdc.dir.path().display()),
        "private/web:1",
    );
    let reference = format!("{}/private/web:1", registry.host());
    let out = vdc.run(&["image", "pull", &reference]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs credentials"));

    let out = vdc.run_with_input(
        &["registry", "login", &registry.host(), "-u", "ci"],
        "guess\n",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused the credentials"), "{err}");
    let file = vdc.data_dir().join("registries.json");
    assert!(!file.exists(), "nothing kept from a refused login");

    let out = vdc.run_with_input(
        &["registry", "login", &registry.host(), "-u", "ci"],
        "s3cret\n",
    );
    assert!(out.status.success(), "{out:?}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        !std::fs::read_to_string(&file).unwrap().contains("s3cret"),
        "base64, as Docker keeps it"
    );
    vdc.ok(&["image", "pull", &reference]);

    vdc.ok(&["registry", "logout", &registry.host()]);
    vdc.ok(&["image", "rm", &reference]);
    let out = vdc.run(&["image", "pull", &reference]);
    assert!(!out.status.success(), "logged out: refused again");
}

/// A tenant's containers come from registries and run as their images'
/// users: a file of the node is no image a tenant may name (the server would
/// read it as root), and root (uid 0 is the node's) needs the admin's leave,
/// named in the spec or chosen by the image.
#[test]
fn a_tenant_gets_neither_the_nodes_files_nor_its_root_through_an_image() {
    root();
    let vdc = Vdc::start();
    build_image(vdc.dir.path());
    // The same image, as root by its own config.
    umoci(
        vdc.dir.path(),
        &[
            "config",
            "--image",
            "images:web",
            "--tag",
            "rootly",
            "--config.user",
            "root",
        ],
    );
    let registry = vdc_testkit::registry::Registry::start(&vdc.dir.path().join("registry"));
    for (tag, repository) in [("web", "shop/web:1"), ("rootly", "shop/rootly:1")] {
        registry.push(
            &format!("oci:{}/images:{tag}", vdc.dir.path().display()),
            repository,
        );
    }
    let acme = vdc.create_tenant("acme", &[]);
    let up = |name: &str, image: &str, extra: &str| {
        let spec = write_spec(
            &vdc,
            name,
            &format!(
                r#"app = "{name}"
[components.web]
appliance = "container"
image = "{image}"
args = ["-f", "-p", "${{PORT}}", "-h", "/srv/www"]
inputs.http = {{ protocol = "tcp" }}
{extra}
"#
            ),
        );
        as_token(
            &vdc,
            &acme,
            &["up", "-d", "--timeout", "5", spec.to_str().unwrap()],
        )
    };
    let stderr = |out: &std::process::Output| String::from_utf8_lossy(&out.stderr).into_owned();

    // Files of the node: an image layout the admin could run, and any path.
    let layout = format!("oci:{}/images:web", vdc.dir.path().display());
    for image in [layout.as_str(), "oci:/etc", "oci-archive:/etc/shadow"] {
        let out = up("files", image, "");
        assert!(!out.status.success(), "{image}: {out:?}");
        assert!(
            stderr(&out).contains("a file of the node, which only the admin may name"),
            "{image}: {}",
            stderr(&out)
        );
    }
    // Root named in the spec: refused at submission, as for a process.
    let out = up(
        "named",
        &format!("{}/shop/web:1", registry.host()),
        "user = \"0\"",
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("asks to run as `0`"),
        "{}",
        stderr(&out)
    );
    // Root chosen by the image: the node refuses to start it.
    let rootly = format!("{}/shop/rootly:1", registry.host());
    let out = up("rootly", &rootly, "");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("may not run anything as root"),
        "{}",
        stderr(&out)
    );
    for i in vdc.instances("rootly") {
        assert!(
            i["pid"].is_null() && i["state"] != "ready",
            "nothing ran: {i:#}"
        );
    }
    // The image's own user is fine.
    let out = up("plain", &format!("{}/shop/web:1", registry.host()), "");
    assert!(out.status.success(), "{}", stderr(&out));
    // With the admin's leave, the same file starts the root image.
    vdc.ok(&["tenant", "run-as", "acme", "root"]);
    let out = up("rootly", &rootly, "");
    assert!(out.status.success(), "{}", stderr(&out));
    let list = vdc.instances("rootly");
    assert_eq!(list[0]["state"], "ready", "{list:#?}");
}

/// The shop example from images: examples/images/build.sh builds them
/// from this machine's python3 and redis, examples/containers.toml runs them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shop_runs_from_the_example_images() {
    root();
    let vdc = Vdc::start();
    let (spec, ports) = vdc.example("containers.toml");
    let build = Command::new(examples_dir().join("images/build.sh"))
        .arg(vdc.dir.path().join("images/oci"))
        .output()
        .unwrap();
    assert!(build.status.success(), "{build:?}");
    vdc.ok(&["up", "-d", "--timeout", "60", spec.to_str().unwrap()]);
    let gateway = format!("http://127.0.0.1:{}", ports[0]);
    let client = http();
    let put = client
        .put(format!("{gateway}/items/apple"))
        .body("red")
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());
    let mut served_by = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let r: serde_json::Value = client
            .get(format!("{gateway}/items/apple"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["value"], "red");
        served_by.insert(r["instance"].as_str().unwrap().to_owned());
    }
    // Latency-aware balancing may favour some; more than one serves.
    assert!(served_by.len() >= 2, "{served_by:?}");
    // The database comes back with its data from its volume.
    let db = vdc.pid_of("shop-oci", "shop-oci/db/0").unwrap();
    signal(db, Signal::SIGKILL);
    vdc.wait_instances("shop-oci", "the database to be back", |list| {
        list.iter().any(|i| {
            instance_name(i) == "shop-oci/db/0" && i["restarts"] == 1 && i["state"] == "ready"
        })
    });
    let value = value_when_served(&client, &format!("{gateway}/items/apple")).await;
    assert_eq!(value, Some(serde_json::json!("red")));
    // What redis itself says: it ran from its image and read its data back.
    let log = vdc.ok(&["logs", "shop-oci/db/0"]);
    assert!(log.contains("Ready to accept connections"), "{log}");
    assert!(log.contains("DB loaded from append only file"), "{log}");
    let layers = vdc.data_dir().join("containers/default/shop-oci");
    assert_eq!(
        std::fs::read_dir(&layers).unwrap().count(),
        4,
        "a writable layer each"
    );
    vdc.ok(&["down", "shop-oci"]);
    let left: Vec<_> = std::fs::read_dir(&layers)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "writable layers outlived their instances: {left:?}"
    );
}

/// A container gets its cgroup's limits (past its memory it is killed and
/// restarted, and the event says why) and its exec probes run inside it.
#[test]
fn a_container_past_its_memory_is_killed_and_exec_probes_run_inside() {
    root();
    let vdc = Vdc::start();
    build_image(vdc.dir.path());
    let spec = write_spec(
        &vdc,
        "limits",
        r#"app = "limits"
[components.web]
appliance = "container"
image = "oci:images:web"
args = ["-f", "-p", "${PORT}", "-h", "/srv/www"]
inputs.http = { protocol = "tcp", health = { exec = ["cat", "/srv/www/index.html"] } }

[components.hog]
appliance = "container"
image = "oci:images:web"
command = ["sh", "-c", "sleep 0.5; x=$(yes 0123456789abcdef | head -c 200000000); echo survived"]
resources = { cpu = 0.5, memory = "48MiB" }
"#,
    );
    vdc.ok(&["up", "-d", spec.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = vdc.ok(&["events", "limits", "-o", "json", "--limit", "200"]);
        let events: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let killed = events
            .iter()
            .find(|e| e["kind"] == "instance-exited" && e["instance"] == "limits/hog/0");
        if let Some(killed) = killed {
            assert!(
                killed["reason"].as_str().unwrap().contains("out of memory"),
                "{killed}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no OOM kill: {events:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The exec probe (cat inside the container) made web ready.
    let web = vdc
        .instances("limits")
        .into_iter()
        .find(|i| instance_name(i) == "limits/web/0")
        .unwrap();
    assert_eq!(web["state"], "ready", "{web}");
    let log = vdc.ok(&["logs", "limits/hog"]);
    assert!(!log.contains("survived"), "{log}");
}
