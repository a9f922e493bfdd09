use anyhow::{bail, Context as _};
use lifeline_repo::Repository;

use crate::context::{print_json, Context};
use crate::{exit, password};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Target pack size in MiB (larger packs mean fewer objects on S3)
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pack_size: u64,
}

pub fn run(ctx: &Context, args: Args) -> anyhow::Result<u8> {
    let location = ctx.options.location()?;
    ctx.audit.begin("init", location);
    if !location.starts_with("s3://") {
        let path = std::path::Path::new(location.trim_start_matches("file://"));
        if path.exists() {
            let empty = path.is_dir()
                && path
                    .read_dir()
                    .map(|mut d| d.next().is_none())
                    .unwrap_or(false);
            if !empty {
                bail!(
                    "{} already exists and is not an empty directory; `init` needs a new location",
                    path.display()
                );
            }
        }
        std::fs::create_dir_all(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
    }
    let password = password::new_password(None, Some(&ctx.options.key))?;
    let repo = Repository::init(ctx.storage()?, password.bytes(), args.pack_size << 20)?;
    ctx.audit.opened(&repo);
    ctx.audit.detail("repository_id", &repo.config().id);
    if ctx.json {
        print_json(&serde_json::json!({ "id": repo.config().id, "location": location }))?;
    } else {
        println!(
            "created lifeline repository {} at {location}",
            &repo.config().id[..8]
        );
        println!("Keep the password safe: without it the data cannot be recovered.");
    }
    Ok(exit::OK)
}
