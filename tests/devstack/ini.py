# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.
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
