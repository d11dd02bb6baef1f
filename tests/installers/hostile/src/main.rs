//! An installer that does, for each custom action, one thing a sandbox must contain; the
//! built-in actions do nothing and succeed, so a test can check the next action still works.

use std::io::Write;

fn main() {
    let action = std::env::var("CNAB_ACTION").unwrap_or_default();
    match action.as_str() {
        "loop" => {
            let mut n = 0u64;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "sleep" => std::thread::sleep(std::time::Duration::from_secs(3600)),
        "grow" => {
            let mut kept = Vec::new();
            loop {
                kept.push(vec![1u8; 16 << 20]);
                std::hint::black_box(&kept);
            }
        }
        "escape" => {
            // Each must fail: nothing outside the runtime contract's paths exists, and the
            // bundle's own files are read-only.
            let tries: [(&str, std::io::Result<()>); 4] = [
                ("read /etc/passwd", std::fs::read("/etc/passwd").map(drop)),
                ("read /cnab/../../etc/passwd", std::fs::read("/cnab/../../etc/passwd").map(drop)),
                ("list /proc", std::fs::read_dir("/proc").map(drop)),
                ("write /cnab/bundle.json", std::fs::write("/cnab/bundle.json", b"{}")),
            ];
            let mut escaped = false;
            for (what, outcome) in tries {
                match outcome {
                    Ok(()) => {
                        println!("ESCAPED: {what}");
                        escaped = true;
                    }
                    Err(e) => eprintln!("refused: {what}: {e}"),
                }
            }
            std::process::exit(if escaped { 0 } else { 3 });
        }
        "connect" => {
            let target = std::env::var("TARGET").unwrap_or_default();
            match std::net::TcpStream::connect(&target) {
                Ok(_) => println!("CONNECTED to {target}"),
                Err(e) => {
                    eprintln!("connecting to {target}: {e}");
                    std::process::exit(4);
                }
            }
        }
        "outputs" => {
            let mut file = std::fs::File::create("/cnab/app/outputs/big").expect("creating the output");
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..1024 {
                file.write_all(&chunk).expect("writing the output");
            }
        }
        "flood" => {
            let line = "x".repeat(1023);
            loop {
                println!("{line}");
            }
        }
        "crash" => panic!("the installer gave up"),
        _ => println!("{action}: nothing to do"),
    }
}
