//! The guest's whole userspace: busybox, the test programs, the modules and an `/init` that
//! runs the tests and reports the result on the serial console.

use std::{fs, io::BufWriter, path::Path};

use anyhow::{Context as _, Result};

use super::{cpio, kernel::Module, payload::Payload};

/// Debian's busybox-static: a static busybox needs nothing else in the initramfs.
const BUSYBOX: &str = "/bin/busybox";

/// The line `/init` prints when all tests have run; the host reads the status from it.
pub const RESULT_MARKER: &str = "LOADTRACE-VM-RESULT: ";
/// Starts the line `/init` prints for each failed test executable, so the host can name it
/// even when its output has scrolled out of the failure report.
pub const FAILED_MARKER: &str = "LOADTRACE-VM-FAILED: ";
/// The first line `/init` prints, which ends the boot for the boot time measurement.
pub const INIT_BANNER: &str = "LOADTRACE-VM: init started";

/// Where the guest's script goes when it runs one instead of the tests.
const SCRIPT_PATH: &str = "guest-script";

/// What `/init` runs once the guest is set up.
#[derive(Clone, Copy)]
pub enum Guest<'a> {
    /// Every test executable in the payload.
    Tests,
    /// A busybox sh script, in the environment the tests get; its exit status is the result.
    Script(&'a str),
}

/// Writes the initramfs to `path`, uncompressed: the kernel takes a plain cpio archive, and
/// gunzip under TCG plus gzip on the host cost about 7 s per kernel for a 200 MB payload,
/// more than the whole boot.
pub fn write(path: &Path, modules: &[Module], payload: &Payload, guest: Guest) -> Result<()> {
    let file = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    write_archive(BufWriter::new(file), modules, payload, guest)
        .with_context(|| format!("writing {}", path.display()))
}

fn write_archive(
    out: impl std::io::Write,
    modules: &[Module],
    payload: &Payload,
    guest: Guest,
) -> Result<()> {
    let mut a = cpio::Writer::new(out);
    for dir in [
        "bin",
        "dev",
        "proc",
        "sys",
        "tmp",
        "root",
        "tests",
        "lib",
        "lib/modules-load",
    ] {
        a.dir(dir)?;
    }
    // The kernel opens /dev/console for init's stdin and stdout before anything can mount
    // devtmpfs; without this node /init's output would go nowhere.
    a.char_dev("dev/console", 0o600, 5, 1)?;
    add_file(&mut a, "bin/busybox", Path::new(BUSYBOX))?;
    add_file(&mut a, "bin/loadtrace", &payload.loadtrace)?;
    add_file(&mut a, "bin/lt-workload", &payload.workload)?;
    add_file(&mut a, "bin/lt-validate", &payload.validator)?;
    for (name, path) in &payload.tests {
        add_file(&mut a, &format!("tests/{name}"), path)?;
    }
    let module_files = module_files(modules);
    for (file, m) in module_files.iter().zip(modules) {
        a.file(&format!("lib/modules-load/{file}"), 0o644, &m.data)?;
    }
    if let Guest::Script(script) = guest {
        a.file(SCRIPT_PATH, 0o755, script.as_bytes())?;
    }
    let tests: Vec<&str> = payload.tests.iter().map(|(n, _)| n.as_str()).collect();
    let init = init_script(&module_files, modules, &tests, guest);
    a.file("init", 0o755, init.as_bytes())?;
    a.finish()?.flush()?;
    Ok(())
}

fn add_file(a: &mut cpio::Writer<impl std::io::Write>, to: &str, from: &Path) -> Result<()> {
    let data = fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    a.file(to, 0o755, &data)?;
    Ok(())
}

/// Numbered so a directory listing in the guest shows the load order too.
fn module_files(modules: &[Module]) -> Vec<String> {
    modules
        .iter()
        .enumerate()
        .map(|(i, m)| format!("{:02}-{}.ko", i + 1, m.name))
        .collect()
}

fn init_script(
    module_files: &[String],
    modules: &[Module],
    tests: &[&str],
    guest: Guest,
) -> String {
    let mut s = String::from(INIT_PROLOGUE);
    for (file, m) in module_files.iter().zip(modules) {
        let params = if m.params.is_empty() {
            String::new()
        } else {
            format!(" {}", m.params)
        };
        s.push_str(&format!(
            "insmod /lib/modules-load/{file}{params} || fail \"loading {}\"\n",
            m.name
        ));
    }
    s.push_str(INIT_ENV);
    // For investigating a failure inside the guest: shell commands to run before the tests,
    // and arguments for every test executable (e.g. a test name to run only that test).
    if let Ok(extra) = std::env::var("LOADTRACE_VM_INIT_EXTRA") {
        s.push_str(&extra);
        s.push('\n');
    }
    let args = std::env::var("LOADTRACE_VM_TEST_ARGS").unwrap_or_default();
    s = s.replace("@TEST_ARGS@", &args);
    match guest {
        Guest::Tests => {
            for test in tests {
                s.push_str(&format!("run_test '{test}'\n"));
            }
        }
        Guest::Script(_) => s.push_str(&format!("run_script /{SCRIPT_PATH}\n")),
    }
    s.push_str(INIT_EPILOGUE);
    s.replace("@BANNER@", INIT_BANNER)
        .replace("@MARKER@", RESULT_MARKER)
        .replace("@FAILED@", FAILED_MARKER)
}

/// Mounts what the tests and loadtrace expect of a normal system. Every failure ends the run
/// with a non-zero result, so a broken guest never looks like a passing one.
const INIT_PROLOGUE: &str = r#"#!/bin/busybox sh
# Generated by `cargo xtask vm-test`.
# busybox --install finds itself through /proc/self/exe, so proc comes first.
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
export PATH=/bin
echo "@BANNER@ on $(uname -r)"

fail() {
    echo "@FAILED@/init: $*"
    echo "@MARKER@1"
    poweroff -f
}

mount -t sysfs sysfs /sys || fail "mounting sysfs"
mount -t devtmpfs devtmpfs /dev || fail "mounting devtmpfs"
mount -t tracefs tracefs /sys/kernel/tracing || fail "mounting tracefs"
mount -t debugfs debugfs /sys/kernel/debug || fail "mounting debugfs"
mount -t bpf bpf /sys/fs/bpf || fail "mounting bpffs"
mount -t tmpfs tmpfs /tmp || fail "mounting tmpfs"
mount -t cgroup2 cgroup2 /sys/fs/cgroup || fail "mounting cgroup2"
"#;

/// Adds the fast null_blk device, waits for the block devices (devtmpfs creates nodes
/// asynchronously), then sets the environment the integration tests read.
const INIT_ENV: &str = r#"
# A third null_blk device that completes every request at once (irqmode=0), for measuring
# what tracing costs per I/O. Devices made through configfs take the module parameters as
# their defaults, so the timer mode of nullb0 and nullb1 has to be undone explicitly.
mount -t configfs configfs /sys/kernel/config || fail "mounting configfs"
fast=/sys/kernel/config/nullb/nullb2
mkdir "$fast" || fail "creating $fast"
echo 0 > "$fast/irqmode" || fail "setting $fast/irqmode"
echo 1 > "$fast/power" || fail "powering on $fast"

for dev in /dev/vda /dev/nullb0 /dev/nullb1 /dev/nullb2; do
    n=0
    while [ ! -b "$dev" ]; do
        n=$((n + 1))
        [ "$n" -le 100 ] || fail "$dev did not appear"
        sleep 0.1
    done
done

# The latency every request on nullb0 and nullb1 takes, as the loaded module has it.
latency=$(cat /sys/module/null_blk/parameters/completion_nsec) || fail "reading null_blk's completion_nsec"
export LT_NULLB=/dev/nullb0 LT_NULLB2=/dev/nullb1 LT_NULLB_LATENCY_NS=$latency LT_NULLB_FAST=/dev/nullb2
export HOME=/root CI=true LT_IN_VM=1 LT_SCRATCH=/dev/vda
export LOADTRACE_BIN=/bin/loadtrace LT_WORKLOAD_BIN=/bin/lt-workload
# A failing test's backtrace is the only debugging aid a VM run leaves behind.
export RUST_BACKTRACE=1

# QEMU TCG can run a stale translation of a tracepoint site the kernel has just patched: an
# int3 Oops at such a site (6.12, in enqueue_task_fair and dequeue_entities, then with one
# holder in __schedule's call to the switch tracepoint) while tests attached and detached
# programs. The kernel patches a tracepoint's site when it goes from none attached to one
# (the jump) and from one to two (the static call, from the one program to the iterator).
# Two sets of empty programs held on loadtrace's hooks for the guest's whole life leave no
# later attach or detach anything to patch there.
for holder in 1 2; do
    /bin/loadtrace --empty-programs --interval 86400 > /dev/null 2>&1 &
    sleep 3
    kill -0 $! || fail "holding the tracepoints with empty programs ($holder)"
done

status=0
run_test() {
    echo "LOADTRACE-VM: ==== running $1"
    start=$(date +%s)
    "/tests/$1" --test-threads=1 @TEST_ARGS@
    rc=$?
    took=$(($(date +%s) - start))
    if [ "$rc" -eq 0 ]; then
        echo "LOADTRACE-VM: ==== $1 passed in ${took}s"
    else
        echo "@FAILED@$1 (exit status $rc after ${took}s)"
        status=$rc
    fi
}

run_script() {
    echo "LOADTRACE-VM: ==== running $1"
    sh "$1"
    rc=$?
    [ "$rc" -eq 0 ] || echo "@FAILED@$1 (exit status $rc)"
    status=$rc
}

"#;

const INIT_EPILOGUE: &str = r#"
echo "@MARKER@$status"
poweroff -f
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_loads_modules_in_order_and_runs_every_test() {
        let modules = vec![
            Module {
                name: "configfs".into(),
                data: vec![],
                params: "",
            },
            Module {
                name: "null_blk".into(),
                data: vec![],
                params: "nr_devices=2",
            },
        ];
        let files = module_files(&modules);
        let init = init_script(&files, &modules, &["sched", "io"], Guest::Tests);
        let configfs = init
            .find("insmod /lib/modules-load/01-configfs.ko ||")
            .unwrap();
        let null_blk = init
            .find("insmod /lib/modules-load/02-null_blk.ko nr_devices=2 ||")
            .unwrap();
        assert!(configfs < null_blk);
        assert!(init.contains("run_test 'sched'\nrun_test 'io'\n"));
        assert!(init.contains(&format!("echo \"{RESULT_MARKER}$status\"")));
        assert!(init.starts_with("#!/bin/busybox sh\n"));
        assert!(!init.contains("run_script /"));
    }

    #[test]
    fn init_sets_up_the_null_devices_for_the_tests() {
        let init = init_script(&[], &[], &["disk"], Guest::Tests);
        let configfs = init.find("mount -t configfs").unwrap();
        let irqmode = init.find("echo 0 > \"$fast/irqmode\"").unwrap();
        let power = init.find("echo 1 > \"$fast/power\"").unwrap();
        let waits = init.find("/dev/nullb1 /dev/nullb2; do").unwrap();
        let tests = init.find("run_test 'disk'").unwrap();
        assert!(configfs < irqmode && irqmode < power && power < waits && waits < tests);
        for var in [
            "LT_NULLB=/dev/nullb0",
            "LT_NULLB2=/dev/nullb1",
            "LT_NULLB_LATENCY_NS=$latency",
            "LT_NULLB_FAST=/dev/nullb2",
        ] {
            assert!(init.contains(var), "{var} is not exported");
        }
    }

    #[test]
    fn a_script_guest_runs_the_script_instead_of_the_tests() {
        let init = init_script(&[], &[], &["sched"], Guest::Script("echo hi"));
        assert!(init.contains("run_script /guest-script\n"));
        assert!(!init.contains("run_test 'sched'"));
        let marker = init
            .find(&format!("echo \"{RESULT_MARKER}$status\""))
            .unwrap();
        assert!(init.find("run_script /guest-script").unwrap() < marker);
    }
}
