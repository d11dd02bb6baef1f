//! A driver that misbehaves on purpose, for the sandbox tests. `relocate` does what the image key
//! says; any other key behaves.

use ferry_driver_sdk::{
    Descriptor, Destination, Driver, DriverInfo, Error, Image, Result, Source, Store, Summary, export_driver,
    open_destination,
};

struct Hostile;

impl Driver for Hostile {
    fn info() -> DriverInfo {
        DriverInfo {
            name: "hostile".into(),
            version: "0.0.1".into(),
            image_types: vec!["hostile".into()],
            reads_mapping: false,
        }
    }

    fn fetch(_image: Image, _origin: &Source, _store: &Store) -> Result<Descriptor> {
        Err(Error::unsupported("hostile drivers do not fetch"))
    }

    fn verify(_image: Image, _stored: &Source) -> Result<()> {
        Ok(())
    }

    fn relocate(
        image: Image,
        stored: &Source,
        destination: &Destination,
        _mapping: Vec<(String, String)>,
    ) -> Result<String> {
        match image.key.as_str() {
            "spin" => loop {
                std::hint::black_box(());
            },
            "grow" => {
                let hog = vec![1u8; 1 << 30];
                Ok(format!("allocated {}", hog.len()))
            }
            "read-passwd" => match std::fs::read("/etc/passwd") {
                Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
                Err(e) => Err(Error::failed(format!("open /etc/passwd: {e}"))),
            },
            "escape-destination" => {
                let root = stored.manifest(None)?.descriptor();
                destination.write_file(stored, &root, "../escaped")
            }
            "other-destination" => {
                let other = open_destination("/tmp/not-granted")?;
                other.location();
                Ok("opened".into())
            }
            // Another image's place in the same grant: its relocated content is not this one's.
            "neighbour" => {
                let other = open_destination("web/other-image")?;
                Ok(format!("opened {}", other.location()))
            }
            "hoard-handles" => {
                let mut held = Vec::new();
                loop {
                    held.push(open_destination(&format!("sub{}", held.len()))?);
                }
            }
            "oversized" => {
                let big = vec![b' '; 8 << 20];
                destination.put_document("application/json", &big, None)
            }
            "panic" => panic!("the hostile driver panics on purpose"),
            "chatty" => {
                for i in 0..5_000 {
                    eprintln!("line {i} of noise the host must cap");
                }
                Ok("chatted".into())
            }
            _ => Ok(format!("relocated {}", image.key)),
        }
    }

    fn inspect(_image: Image, _stored: &Source) -> Result<Summary> {
        Err(Error::unsupported("hostile drivers do not inspect"))
    }
}

export_driver!(Hostile);
