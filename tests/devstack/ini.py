"""iniget/iniset/inidelete for the devstack phase tests (configparser)."""

import configparser
import sys


def main(action, path, section, option, value=None):
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(path)
    if action == 'get':
        if section == 'DEFAULT':
            print(parser.defaults().get(option, ''))
        else:
            print(parser.get(section, option, fallback=''))
        return
    if action == 'set':
        if section != 'DEFAULT' and not parser.has_section(section):
            parser.add_section(section)
        parser.set(section, option, value)
    elif action == 'delete':
        if section == 'DEFAULT' or parser.has_section(section):
            parser.remove_option(section, option)
    with open(path, 'w') as f:
        parser.write(f)


if __name__ == '__main__':
    main(*sys.argv[1:])
