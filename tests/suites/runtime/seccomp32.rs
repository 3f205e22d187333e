//! 32-bit programs and the default seccomp profile: the profile lists the host's own ABI
//! alone, so on x86_64 a program that makes its calls through the i386 ABI is killed with
//! SIGSYS (the documented trade-off, README's confinement table), where the same program runs
//! with `seccomp=unconfined` and under moby's own profile given as `seccomp=<file>`.
//!
//! The program is a tiny static i386 ELF built here byte by byte: `write(1, "ia32 ok\n", 8)`
//! and `exit(0)` through `int 0x80`, no toolchain needed.

use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use berth_runtime::{RegistryAuth, Seccomp, SeccompProfile};
use berth_tests::{World, fixtures};

use super::{container, run_to_exit, runtime};

/// moby's default seccomp profile as Debian installs it (`make deps`).
const MOBY_PROFILE: &str =
    "/usr/share/gocode/src/github.com/docker/docker/profiles/seccomp/default.json";

/// What the program prints when its calls get through.
const GREETING: &str = "ia32 ok";

/// The i386 ELF: one ELF32 header, one loadable segment holding all of the file, then the
/// code and its message.
fn ia32_program() -> Vec<u8> {
    const BASE: u32 = 0x0804_8000;
    const HEADERS: u32 = 52 + 32;
    let message = format!("{GREETING}\n").into_bytes();
    let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
    // The code is 31 bytes; the message follows it.
    let code_len = 31;
    let message_at = BASE + HEADERS + code_len;
    let mut code = Vec::new();
    code.push(0xb8); // mov eax, 4 (write)
    code.extend(4u32.to_le_bytes());
    code.push(0xbb); // mov ebx, 1 (stdout)
    code.extend(1u32.to_le_bytes());
    code.push(0xb9); // mov ecx, message
    code.extend(message_at.to_le_bytes());
    code.push(0xba); // mov edx, len
    code.extend(len.to_le_bytes());
    code.extend([0xcd, 0x80]); // int 0x80
    code.push(0xb8); // mov eax, 1 (exit)
    code.extend(1u32.to_le_bytes());
    code.extend([0x31, 0xdb]); // xor ebx, ebx
    code.extend([0xcd, 0x80]); // int 0x80
    assert_eq!(code.len(), code_len as usize);
    let total = HEADERS + code_len + len;

    let mut elf = Vec::new();
    // e_ident: magic, 32-bit, little-endian, version 1, System V ABI, padding.
    elf.extend(b"\x7fELF\x01\x01\x01");
    elf.extend([0u8; 9]);
    elf.extend(2u16.to_le_bytes()); // e_type: executable
    elf.extend(3u16.to_le_bytes()); // e_machine: i386
    elf.extend(1u32.to_le_bytes()); // e_version
    elf.extend((BASE + HEADERS).to_le_bytes()); // e_entry
    elf.extend(52u32.to_le_bytes()); // e_phoff
    elf.extend(0u32.to_le_bytes()); // e_shoff
    elf.extend(0u32.to_le_bytes()); // e_flags
    elf.extend(52u16.to_le_bytes()); // e_ehsize
    elf.extend(32u16.to_le_bytes()); // e_phentsize
    elf.extend(1u16.to_le_bytes()); // e_phnum
    elf.extend([0u8; 6]); // no section headers
    // The one PT_LOAD segment, read and execute.
    for word in [1, 0, BASE, BASE, total, total, 5, 0x1000u32] {
        elf.extend(word.to_le_bytes());
    }
    elf.extend(code);
    elf.extend(message);
    elf
}

/// A shell command that writes the program to the container's root, runs it and prints its
/// exit status (the image has busybox's `chmod` but no link to it).
fn write_and_run(program: &[u8]) -> String {
    let escaped: String = program.iter().map(|b| format!("\\{b:03o}")).collect();
    format!("printf '{escaped}' > /ia32 && busybox chmod +x /ia32 && /ia32; echo exit=$?")
}

pub(super) async fn an_i386_program_is_killed_by_the_default_profile(w: Arc<World>) -> Result<()> {
    if std::env::consts::ARCH != "x86_64" {
        eprintln!("SKIPPED: the i386 ABI is x86_64's compatibility ABI; this host is not x86_64");
        return Ok(());
    }
    let img = fixtures::hello(&w.registry().host(), "ia32", "v1").await?;
    let (rt, _) = runtime(&w).await?;
    rt.pull_image(&img.reference, &RegistryAuth::Anonymous, None)
        .await?;
    let command = write_and_run(&ia32_program());
    let run = |seccomp: Seccomp| {
        let task = w.unique("ia32");
        let mut spec = container(&task, "app", &img.reference, &["sh", "-c", &command]);
        spec.seccomp = seccomp;
        let rt = &rt;
        async move {
            let (status, logs) = run_to_exit(rt, &spec).await?;
            ensure!(status.code == 0, "the shell exited {}", status.code);
            Ok::<_, anyhow::Error>(logs)
        }
    };

    // Without a filter the program runs: the host runs i386 programs, and the bytes are one.
    let logs = run(Seccomp::Unconfined).await?;
    ensure!(
        logs == [GREETING, "exit=0"],
        "with seccomp=unconfined the i386 program did not run (does this kernel have \
         CONFIG_IA32_EMULATION?): {logs:?}"
    );

    // Under the default profile its first call, through an ABI the filter does not list,
    // kills it: SIGSYS (31), which the shell reports as 128 + 31 (and says "Bad system call"
    // on stderr, which reaches the log through its own pipe, so before or after the status
    // line), and nothing got written.
    let logs = run(Seccomp::Default).await?;
    ensure!(
        logs.iter().any(|l| l == "exit=159") && !logs.iter().any(|l| l == GREETING),
        "under the default profile the i386 program was not killed with SIGSYS: {logs:?}"
    );

    // moby's profile lists x86 beside x86_64: the escape hatch README names.
    match std::fs::read_to_string(MOBY_PROFILE) {
        Ok(json) => {
            let profile = SeccompProfile::parse(&json).context("moby's profile")?;
            let logs = run(Seccomp::Profile(profile)).await?;
            ensure!(
                logs == [GREETING, "exit=0"],
                "under moby's profile the i386 program did not run: {logs:?}"
            );
        }
        Err(error) if std::env::var_os("CI").is_none() => eprintln!(
            "SKIPPED (part): cannot read moby's profile {MOBY_PROFILE} ({error}); install \
             golang-github-docker-docker-dev (make deps)"
        ),
        Err(error) => return Err(error).context(format!("read {MOBY_PROFILE}")),
    }
    Ok(())
}
