//! `hostyard wordpress`: a WordPress site's administrator password.

use clap::Subcommand;
use hostyard_config::NodeConfig;
use hostyard_core::Domain;

use super::{runtime, usage, Failure};

#[derive(Subcommand)]
pub enum WordpressAction {
    /// Print the administrator and password hostyard installed the site
    /// with, or set last (secrets/wp-admin.env).
    Password {
        /// The site's domain, as in its unit name (example.com).
        domain: String,
    },
    /// Set a new generated password for the site's administrator (the one
    /// of secrets/wp-admin.env, else its first) in the running site and
    /// store it in secrets/wp-admin.env (0600). Printed only with --print.
    ResetPassword {
        /// Another user's login instead.
        #[arg(long, value_name = "LOGIN")]
        user: Option<String>,
        /// Print the new password too.
        #[arg(long)]
        print: bool,
        /// The site's domain, as in its unit name (example.com).
        domain: String,
    },
}

pub fn run(config: &NodeConfig, action: WordpressAction) -> Result<u8, Failure> {
    match action {
        WordpressAction::Password { domain } => {
            let domain = Domain::parse_instance(&domain).map_err(usage)?;
            match hostyard::wordpress::read_admin(config, &domain).map_err(runtime)? {
                Some(admin) => {
                    println!("user: {}\npassword: {}", admin.user, admin.password);
                    Ok(0)
                }
                None => Err(runtime(anyhow::anyhow!(
                    "{domain} keeps the administrators it was imported with: \
                     hostyard wordpress reset-password {domain} sets a new password"
                ))),
            }
        }
        WordpressAction::ResetPassword {
            user,
            print,
            domain,
        } => {
            let domain = Domain::parse_instance(&domain).map_err(usage)?;
            let admin = hostyard::wordpress::reset_password(config, &domain, user.as_deref())
                .map_err(runtime)?;
            println!(
                "set a new password for {} of {domain}, stored in {}",
                admin.user,
                config.layout().wp_admin_file(&domain).display()
            );
            if print {
                println!("password: {}", admin.password);
            }
            Ok(0)
        }
    }
}
