//! `weft compliance`: the XEP-0479 table for a configuration's modules, and `--doap`: the DOAP
//! description of everything weft implements (the repository's weft.doap), both from the
//! specifications the code declares (`weft_server::compliance`).

use weft_config::Config;
use weft_server::compliance;
use weft_server::modules;

use crate::ConfigSource;

pub fn run(config: &Config, source: &ConfigSource, doap: bool) -> anyhow::Result<()> {
    if doap {
        let claims = compliance::claims(modules::ALL.iter().map(|def| def.spec.specs));
        print!("{}", compliance::doap(&claims));
        return Ok(());
    }
    let loaded = modules::load(config).map_err(|problems| {
        let lines: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        anyhow::anyhow!(
            "the configuration's modules do not load:\n  {}",
            lines.join("\n  ")
        )
    })?;
    println!(
        "weft {} with the modules of {source}: {}\n",
        env!("CARGO_PKG_VERSION"),
        loaded.names().join(", ")
    );
    print!(
        "{}",
        compliance::report(&compliance::claims(loaded.specs()))
    );
    Ok(())
}
